// CurlTransport: HttpTransport on libcurl's multi interface.
//
// One I/O thread of its own runs curl_multi_poll/perform for every transfer: connections
// are kept in the multi handle's cache and reused across requests (HTTP/1.1 keep-alive),
// TLS goes through libcurl/OpenSSL, SigV4 through CURLOPT_AWS_SIGV4. The thread is the
// production I/O edge, like RealEnv's own threads: the simulator never uses this class
// (it uses memory://), so it may use a real thread and curl's real clocks.
//
// Completions are handed to the Env with env.Post: no coroutine ever resumes on the curl
// thread. Send() sets up the easy handle on the caller's thread and queues it; the thread
// adds it to the multi handle (curl_multi_wakeup interrupts the poll).
//
// Bounds: the transport queues whatever it is given; the S3 client bounds requests in
// flight with its AsyncSemaphore. `max_connections` sizes curl's connection cache, which
// should be at least that bound or connections are closed instead of reused.
//
// Destruction stops the thread; transfers still running complete with Shutdown. Destroy it
// only when no request is in flight (callers own that ordering). `env` must outlive it.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "env/env.h"
#include "s3/http.h"

namespace portal::s3 {

class CurlTransport final : public HttpTransport {
 public:
  struct Options {
    long max_connections = 64;
    bool verbose = false;  // curl's own trace on stderr (debugging only)
    // PEM file of trusted CAs (CURLOPT_CAINFO); empty: libcurl's default store.
    std::string ca_file;
  };

  CurlTransport(Env& env, Options options);
  explicit CurlTransport(Env& env) : CurlTransport(env, Options{}) {}
  ~CurlTransport() override;
  CurlTransport(const CurlTransport&) = delete;
  CurlTransport& operator=(const CurlTransport&) = delete;

  Task<Result<HttpResponse>> Send(const HttpRequest& request) override;

  struct Transfer;  // curl_transport.cc

 private:
  void Submit(Transfer* t);
  void Loop();
  void Finish(Transfer* t, int curl_code);
  void Complete(Transfer* t, Result<HttpResponse> result);

  Env& env_;
  Options options_;
  void* multi_;  // CURLM*, kept out of the header
  std::mutex mu_;
  std::vector<Transfer*> pending_;  // GUARDED_BY(mu_)
  bool stopping_ = false;           // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace portal::s3
