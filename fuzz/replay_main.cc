// fuzz_replay: feeds committed corpus files to a fuzz target's LLVMFuzzerTestOneInput in
// the normal (GCC, unsanitized) build, so every seed and every past crash is a regression
// test even where clang is not installed. A crash or failed check aborts, as under
// libFuzzer.
//
//   fuzz_replay TARGET PATH...   files, or directories of them (sorted; at least one file)
//   fuzz_replay --list           the targets
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_targets.h"
#include "util/log.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc == 2 && std::string_view(argv[1]) == "--list") {
    for (const auto& t : FuzzTargets()) std::printf("%.*s\n", int(t.name.size()), t.name.data());
    return 0;
  }
  if (argc < 3) {
    std::fprintf(stderr, "usage: fuzz_replay TARGET PATH... | fuzz_replay --list\n");
    return 2;
  }
  const FuzzTarget* target = nullptr;
  for (const auto& t : FuzzTargets()) {
    if (t.name == argv[1]) target = &t;
  }
  if (!target) {
    std::fprintf(stderr, "fuzz_replay: no target '%s' (--list shows them)\n", argv[1]);
    return 2;
  }
  portal::log::Init("off");  // decoders log nothing, but the NBD session may
  std::vector<fs::path> files;
  for (int i = 2; i < argc; ++i) {
    std::error_code ec;
    if (fs::is_directory(argv[i], ec)) {
      for (const auto& e : fs::directory_iterator(argv[i])) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
    } else if (fs::is_regular_file(argv[i], ec)) {
      files.push_back(argv[i]);
    } else {
      std::fprintf(stderr, "fuzz_replay: %s: not a file or directory\n", argv[i]);
      return 2;
    }
  }
  // An empty corpus would pass vacuously.
  if (files.empty()) {
    std::fprintf(stderr, "fuzz_replay: no corpus files\n");
    return 1;
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      std::fprintf(stderr, "fuzz_replay: cannot read %s\n", f.c_str());
      return 1;
    }
    std::fprintf(stderr, "%s (%zu bytes)\n", f.c_str(), bytes.size());
    target->run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  std::printf("%s: %zu inputs replayed\n", argv[1], files.size());
  return 0;
}
