// Command-line handling shared by the programs in bin/ (header only: CLI11 stays out of
// lib/). Include as "common/cli.h".
#pragma once

#include <optional>
#include <string>

#include <CLI/CLI.hpp>

namespace portal::cli {

// Makes every named option of `app` and of its subcommands that takes a value refuse an
// empty one ("--storage ''", `--storage "$URL"` with $URL unset): "--storage: must not be
// empty". An empty value never silently means "not given". Positional arguments are the
// program's to check (portalctl names an empty snapshot name in its own error). Call
// after adding every option. (CLI11 ignores an empty environment variable: check those
// yourself.)
inline void RefuseEmptyValues(CLI::App& app) {
  const CLI::Validator non_empty(
      [](std::string& value) { return value.empty() ? std::string("must not be empty") : ""; },
      "", "NonEmpty");
  for (CLI::Option* opt : app.get_options()) {
    if (opt->nonpositional() && opt->get_items_expected_min() > 0) opt->check(non_empty);
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    RefuseEmptyValues(*sub);
  }
}

// Parses the command line. Returns the exit status if the program should stop: 0 after
// --help or --version, 1 after a usage error (printed by CLI11 with a hint; its own codes,
// 105 and up, mean nothing to a script), else nullopt.
inline std::optional<int> Parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;
  }
  return std::nullopt;
}

}  // namespace portal::cli
