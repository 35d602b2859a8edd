// Builds the QEMU argv of a function VM from validated VmOptions, and
// renders it for --dry-run. Pure: no I/O.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "nestor-vm/options.h"

namespace nestor::vm {

// argv[0] is o.qemu. Options and their values are adjacent elements.
std::vector<std::string> BuildQemuArgv(const VmOptions& o);

// The guest kernel command line (only used with --kernel).
std::string KernelCommandLine(const VmOptions& o);

// A value inside a QEMU option string: commas doubled (QEMU's escape).
std::string QemuEscape(std::string_view value);

// POSIX shell quoting: unchanged if only safe characters, else '...'.
std::string ShellQuote(std::string_view arg);

// One option per line ("-opt value \"), shell-quoted, ready to paste.
std::string FormatCommand(const std::vector<std::string>& argv);

}  // namespace nestor::vm
