// Command-line helpers shared by the tools (nestor, nestorctl): CLI11
// parse errors that name what was wrong.
//
// Thread: any. Errors: returned as messages ("" when there is none).
#pragma once

#include <CLI/CLI.hpp>
#include <initializer_list>
#include <string>
#include <string_view>

namespace nestor::cli {

// For a command line whose subcommand is missing or unknown: a message
// naming it and the choices ("" if the subcommands are fine and the parse
// error is another). value_options: the options before the subcommands
// that take a value (their value is not a subcommand).
std::string SubcommandError(CLI::App& app, int argc, char** argv,
                            std::initializer_list<std::string_view> value_options);

}  // namespace nestor::cli
