// The build's version, for every binary's --version: `git describe
// --tags --always --dirty` of the tree it was built from (taken when CMake
// configures, and again whenever a commit or checkout changes HEAD;
// "unknown" when built outside git).
//
// Thread: any. Errors: none.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace nestor {

const char* BuildVersion();
// "PROGRAM VERSION (pool format N)": the newest pool format this build
// writes (volume/format.h's kFormatVersion, passed in: base sits below
// volume).
std::string VersionLine(std::string_view program, uint32_t pool_format);

}  // namespace nestor
