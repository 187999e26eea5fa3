#include "nbd/reply_reader.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "nbd/protocol.h"
#include "util/coding.h"

namespace portal::nbd {

Status ReplyReader::Fail(std::string message) {
  state_ = State::kFailed;
  error_ = Status::Corruption(std::move(message));
  return error_;
}

void ReplyReader::EndChunk() {
  state_ = State::kHeader;
  have_ = 0;
  if (chunk_flags_ & NBD_REPLY_FLAG_DONE) handler_.OnDone(cookie_);
}

Status ReplyReader::OnHeader() {
  have_ = 0;
  uint32_t magic = LoadBE32(small_);
  if (magic == NBD_SIMPLE_REPLY_MAGIC) {
    uint32_t error = LoadBE32(small_ + 4);
    cookie_ = LoadBE64(small_ + 8);
    if (error != 0) {
      handler_.OnError(cookie_, error, "");
      handler_.OnDone(cookie_);
      state_ = State::kHeader;
      return Status::Ok();
    }
    auto len = handler_.SimpleReplyDataLength(cookie_);
    if (!len.ok()) return Fail(len.status().message());
    if (*len == 0) {
      handler_.OnDone(cookie_);
      state_ = State::kHeader;
      return Status::Ok();
    }
    left_ = *len;
    data_pos_ = 0;
    data_absolute_ = false;
    state_ = State::kSimpleData;
    return Status::Ok();
  }
  chunk_flags_ = LoadBE16(small_ + 4);
  chunk_type_ = LoadBE16(small_ + 6);
  cookie_ = LoadBE64(small_ + 8);
  uint32_t length = LoadBE32(small_ + 16);
  left_ = length;
  auto fixed = [&](size_t n) {
    need_ = n;
    left_ = length - n;
    state_ = State::kChunkFixed;
  };
  switch (chunk_type_) {
    case NBD_REPLY_TYPE_NONE:
      state_ = State::kSkip;  // should be empty; tolerate a payload
      break;
    case NBD_REPLY_TYPE_OFFSET_DATA:
      if (length < 8) return Fail(fmt::format("OFFSET_DATA chunk of {} bytes", length));
      fixed(8);
      break;
    case NBD_REPLY_TYPE_OFFSET_HOLE:
      if (length != 12) return Fail(fmt::format("OFFSET_HOLE chunk of {} bytes", length));
      fixed(12);
      break;
    case NBD_REPLY_TYPE_BLOCK_STATUS:
      if (length < 4 || (length - 4) % 8 != 0) {
        return Fail(fmt::format("BLOCK_STATUS chunk of {} bytes", length));
      }
      fixed(4);
      break;
    default:
      if (chunk_type_ & 0x8000) {  // an error type, known or not
        if (length < 6 || length > sizeof small_) {
          return Fail(fmt::format("error chunk of {} bytes", length));
        }
        fixed(length);
      } else {
        state_ = State::kSkip;
      }
  }
  if (state_ == State::kSkip && left_ == 0) EndChunk();
  return Status::Ok();
}

Status ReplyReader::OnFixed() {
  have_ = 0;
  switch (chunk_type_) {
    case NBD_REPLY_TYPE_OFFSET_DATA:
      data_pos_ = LoadBE64(small_);
      data_absolute_ = true;
      state_ = State::kChunkData;
      if (left_ == 0) EndChunk();
      return Status::Ok();
    case NBD_REPLY_TYPE_OFFSET_HOLE:
      handler_.OnHole(cookie_, LoadBE64(small_), LoadBE32(small_ + 8));
      EndChunk();
      return Status::Ok();
    case NBD_REPLY_TYPE_BLOCK_STATUS:
      context_id_ = LoadBE32(small_);
      state_ = State::kExtents;
      if (left_ == 0) EndChunk();
      return Status::Ok();
    default: {  // error chunk
      uint32_t error = LoadBE32(small_);
      uint16_t msg_len = LoadBE16(small_ + 4);
      if (6u + msg_len > need_) {
        return Fail(fmt::format("error chunk message of {} bytes in a {}-byte chunk", msg_len,
                                need_));
      }
      handler_.OnError(cookie_, error,
                       std::string_view(reinterpret_cast<const char*>(small_ + 6), msg_len));
      EndChunk();
      return Status::Ok();
    }
  }
}

Result<size_t> ReplyReader::Consume(std::span<const uint8_t> in) {
  size_t used = 0;
  auto collect = [&](size_t want) {  // into small_[have_..want)
    size_t n = std::min(want - have_, in.size() - used);
    std::memcpy(small_ + have_, in.data() + used, n);
    have_ += n;
    used += n;
    return have_ == want;
  };
  while (state_ != State::kFailed) {
    if (used == in.size()) break;
    switch (state_) {
      case State::kHeader: {
        if (have_ < 4 && !collect(4)) break;
        uint32_t magic = LoadBE32(small_);
        size_t size = 0;
        if (magic == NBD_SIMPLE_REPLY_MAGIC) {
          size = kSimpleReplyHeaderSize;
        } else if (magic == NBD_STRUCTURED_REPLY_MAGIC && structured_) {
          size = kStructuredReplyHeaderSize;
        } else {
          return Fail(fmt::format("bad reply magic {:#010x}", magic));
        }
        if (collect(size)) RETURN_IF_ERROR(OnHeader());
        break;
      }
      case State::kSimpleData:
      case State::kChunkData: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(left_, in.size() - used));
        handler_.OnData(cookie_, data_absolute_, data_pos_, in.subspan(used, n));
        used += n;
        data_pos_ += n;
        left_ -= n;
        if (left_ == 0) {
          if (state_ == State::kSimpleData) {
            state_ = State::kHeader;
            handler_.OnDone(cookie_);
          } else {
            EndChunk();
          }
        }
        break;
      }
      case State::kChunkFixed:
        if (collect(need_)) RETURN_IF_ERROR(OnFixed());
        break;
      case State::kExtents:
        if (collect(8)) {
          have_ = 0;
          left_ -= 8;
          handler_.OnExtent(cookie_, context_id_, LoadBE32(small_), LoadBE32(small_ + 4));
          if (left_ == 0) EndChunk();
        }
        break;
      case State::kSkip: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(left_, in.size() - used));
        used += n;
        left_ -= n;
        if (left_ == 0) EndChunk();
        break;
      }
      case State::kFailed:
        break;
    }
  }
  if (state_ == State::kFailed) return error_;
  return used;
}

}  // namespace portal::nbd
