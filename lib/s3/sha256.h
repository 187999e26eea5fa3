// SHA-256 through OpenSSL, as lower-case hex: the x-amz-content-sha256 header.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace portal::s3 {

std::string Sha256Hex(std::string_view data);
// Of the concatenation of `parts`.
std::string Sha256Hex(const std::vector<std::string_view>& parts);

// SHA-256 of the empty string, for bodiless requests.
inline constexpr std::string_view kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

}  // namespace portal::s3
