#include "config/toml_guard.h"

#include <fmt/format.h>

namespace portal::config {
namespace {

class Scanner {
 public:
  Scanner(std::string_view text, std::string_view source) : text_(text), source_(source) {}

  Status Run() {
    for (; i_ < text_.size(); ++i_) {
      const char c = text_[i_];
      switch (c) {
        case '\n':
          ++line_;
          // A newline ends a top-level key/value pair or table header; inside an array
          // (which may span lines) the next thing is still a value.
          if (depth_ == 0) StartKey();
          break;
        case '#':
          while (i_ + 1 < text_.size() && text_[i_ + 1] != '\n') ++i_;
          break;
        case '"':
        case '\'':
          SkipString(c);
          break;
        case '.':
          if (in_key_ && ++parts_ > kMaxKeyParts) {
            return Error(fmt::format("a key has more than {} dotted parts (at most {})",
                                     kMaxKeyParts, kMaxKeyParts));
          }
          break;
        case '=':
          in_key_ = false;
          break;
        case '[':
          if (in_key_ && depth_ == 0) {
            // At the start of a top-level line: a table header ([a.b] or [[a.b]]), whose
            // dotted name is a key.
            RETURN_IF_ERROR(Open('['));
            if (i_ + 1 < text_.size() && text_[i_ + 1] == '[') {
              ++i_;
              RETURN_IF_ERROR(Open('['));
            }
            break;
          }
          in_key_ = false;
          RETURN_IF_ERROR(Open('['));
          break;
        case '{':
          RETURN_IF_ERROR(Open('{'));
          StartKey();
          break;
        case ',':
          if (depth_ > 0 && stack_[depth_ - 1] == '{') StartKey();
          break;
        case ']':
        case '}':
          // Mismatched pairs are toml++'s to report; any closer ends one level here.
          if (depth_ > 0) --depth_;
          if (c == '}' || depth_ > 0) in_key_ = false;
          break;
        default:
          break;
      }
    }
    return Status::Ok();
  }

 private:
  void StartKey() {
    in_key_ = true;
    parts_ = 1;
  }

  Status Open(char c) {
    if (depth_ == kMaxNesting) {
      return Error(
          fmt::format("more than {} nested arrays, inline tables or table brackets (at most {})",
                      kMaxNesting, kMaxNesting));
    }
    stack_[depth_++] = c;
    return Status::Ok();
  }

  // Moves i_ to the string's closing quote (or to the end of its line if unterminated:
  // toml++ reports that), counting the lines of a multi-line string.
  void SkipString(char quote) {
    const bool basic = quote == '"';
    const bool multi = text_.substr(i_, 3) == std::string_view(basic ? "\"\"\"" : "'''");
    i_ += multi ? 3 : 1;
    for (; i_ < text_.size(); ++i_) {
      const char c = text_[i_];
      if (c == '\n') {
        if (!multi) {
          --i_;  // let Run() count the line and end the key/value pair
          return;
        }
        ++line_;
      } else if (basic && c == '\\') {
        if (i_ + 1 < text_.size() && text_[i_ + 1] == '\n') continue;  // counted next
        ++i_;
      } else if (c == quote) {
        if (!multi) return;
        if (text_.substr(i_, 3) == std::string_view(basic ? "\"\"\"" : "'''")) {
          i_ += 2;
          // Up to two more quotes belong to the content: """a"""" is a".
          for (int extra = 0; extra < 2 && i_ + 1 < text_.size() && text_[i_ + 1] == quote;
               ++extra) {
            ++i_;
          }
          return;
        }
      }
    }
  }

  Status Error(const std::string& what) const {
    return Status::InvalidArgument(fmt::format("{}:{}: {}", source_, line_, what));
  }

  std::string_view text_;
  std::string_view source_;
  size_t i_ = 0;
  size_t line_ = 1;
  bool in_key_ = true;
  size_t parts_ = 1;
  char stack_[kMaxNesting] = {};
  size_t depth_ = 0;
};

}  // namespace

Status CheckTomlShape(std::string_view text, std::string_view source) {
  if (text.size() > kMaxConfigBytes) {
    return Status::InvalidArgument(
        fmt::format("{}: the file is larger than {} bytes (1 MiB), the most a configuration "
                    "file may be",
                    source, kMaxConfigBytes));
  }
  return Scanner(text, source).Run();
}

}  // namespace portal::config
