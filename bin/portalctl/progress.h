// Progress: what portalctl shows on a terminal while a request that can take long
// (snapshot create, delete, restore: each waits for written data and a manifest to reach
// the store) has no reply yet.
//
// The control protocol has no progress messages, and the volume cannot say how far a
// flush or a manifest write has got; what is known for sure is how long we have waited
// and, from a status request on a second connection, how much written data is not yet in
// the store and whether uploads are failing. After the first second one line on stderr,
// rewritten in place:
//
//   snapshot restore snap1: waiting 3 s; 12.00 MiB not yet in the store
//
// and erased once the reply arrives, so the final output is what it would have been.
// Only when stderr is a terminal and neither --quiet nor --json was given (scripts see
// no change).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "util/status.h"

namespace portal::control {
class Client;
}

class Progress {
 public:
  using Connect = std::function<portal::Result<std::unique_ptr<portal::control::Client>>()>;
  // `label`: "snapshot restore snap1"; `connect`: opens the status connection.
  Progress(std::string label, Connect connect);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // While waiting: redraws the line (nothing during the first second).
  void Tick();
  // The reply came: erases the line if one was drawn.
  void Done();

 private:
  std::string StatusNote();

  const std::string label_;
  const Connect connect_;
  const std::chrono::steady_clock::time_point start_;
  std::unique_ptr<portal::control::Client> status_client_;  // reconnected after a timeout
  bool drawn_ = false;
};
