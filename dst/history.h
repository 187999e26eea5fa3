// History: the run's observable events, folded into a fingerprint (FNV-1a 64 over a
// canonical encoding) and kept as text in a small ring for failure reports.
//
// Everything folded in is a pure function of the seed and the binary: request kinds,
// offsets and lengths, reply codes, checksums of data read, crash and open events,
// simulated times. Two runs of one seed print the same fingerprint; a difference means
// non-determinism crept in (a real clock, an unordered container, a thread).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

namespace portal::dst {

class History {
 public:
  void Mix(uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h_ ^= (v >> (8 * i)) & 0xff;
      h_ *= 0x100000001b3ULL;
    }
  }
  void Mix(std::string_view s) {
    for (unsigned char c : s) {
      h_ ^= c;
      h_ *= 0x100000001b3ULL;
    }
    Mix(uint64_t{s.size()});
  }
  // Records a line for the failure report and folds it into the fingerprint.
  void Note(std::string line) {
    Mix(line);
    recent_.push_back(std::move(line));
    if (recent_.size() > kRecent) recent_.pop_front();
  }
  uint64_t fingerprint() const { return h_; }
  const std::deque<std::string>& recent() const { return recent_; }

 private:
  static constexpr size_t kRecent = 40;
  uint64_t h_ = 0xcbf29ce484222325ULL;
  std::deque<std::string> recent_;
};

}  // namespace portal::dst
