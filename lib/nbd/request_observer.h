// RequestObserver: sees every request a connection answers, for server-side trace
// recording ([record] path). A catalog attaches one to an OpenExport; the session then
// reports each request twice:
//
//   token = OnRequest(h)          its header was read (DISC is not a request)
//   OnReply(h, token, nbd_error)  its reply was queued; nbd_error 0 = success, else the
//                                 NBD error sent (invalid requests, device errors and
//                                 NBD_ESHUTDOWN replies included)
//
// A request whose reply is never queued (a WRITE whose payload never fully arrived) gets
// no OnReply. The token is the observer's own (e.g. a clock reading), carried by the
// session so that the codec stays free of clocks.
//
// Calls for one connection come from its serialized context; an observer shared by
// several connections must be thread-safe. Calls must be quick (they run on the
// connection's I/O path) and cannot fail the request.
#pragma once

#include <cstdint>

namespace portal::nbd {

struct RequestHeader;

class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  virtual uint64_t OnRequest(const RequestHeader& h) = 0;
  virtual void OnReply(const RequestHeader& h, uint64_t token, uint32_t nbd_error) = 0;
};

}  // namespace portal::nbd
