#include "common/cli.h"

#include <algorithm>

namespace nestor::cli {

std::string SubcommandError(CLI::App& app, int argc, char** argv,
                            std::initializer_list<std::string_view> value_options) {
  auto all = [](CLI::App*) { return true; };
  auto names = [&](CLI::App* a) {
    std::string s;
    for (CLI::App* sub : a->get_subcommands(all)) s += (s.empty() ? "" : ", ") + sub->get_name();
    return s;
  };
  CLI::App* cur = &app;
  std::string path = app.get_name();
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a.starts_with("-")) {
      if (std::find(value_options.begin(), value_options.end(), a) != value_options.end()) ++i;
      continue;
    }
    auto subs = cur->get_subcommands(all);
    if (subs.empty()) return "";  // a command's own arguments
    auto it = std::find_if(subs.begin(), subs.end(), [&](CLI::App* s) { return s->check_name(std::string(a)); });
    if (it == subs.end()) {
      return "unknown subcommand '" + std::string(a) + "' for '" + path + "' (expected one of: " + names(cur) + ")";
    }
    cur = *it;
    path += " " + std::string(a);
  }
  if (!cur->get_subcommands(all).empty()) return "'" + path + "' needs a subcommand: one of " + names(cur);
  return "";
}

}  // namespace nestor::cli
