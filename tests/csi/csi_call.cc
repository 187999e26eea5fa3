// csi-call: one CSI call from the shell, for tests (vm-tests' guest has no python grpc).
//
//   csi-call --endpoint unix:///csi/csi.sock Node.NodeStageVolume '{"volumeId":"v1",...}'
//
// The request is protobuf JSON of the method's request message (csi.v1); the response is
// printed on stdout as JSON (fields with default values included), exit 0. A gRPC error
// prints "CODE: message" on stderr (CODE as in grpc::StatusCode's names: NOT_FOUND, ...)
// and exits 1; a usage error exits 2. With --batch it reads one call per stdin line and
// answers each on one stdout line (see Batch). Not installed: a test tool.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "csi/v1/csi.pb.h"

namespace {

const char* CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? kNames[i] : "UNKNOWN";
}

int Usage() {
  std::fprintf(stderr,
               "usage: csi-call [--endpoint unix:///path] [--timeout-s N] Service.Method "
               "'<request JSON>'\n"
               "       csi-call [--endpoint unix:///path] [--timeout-s N] --batch\n"
               "  Service: Identity, Controller or Node (package csi.v1)\n");
  return 2;
}

// One call on `stub`: 0 with the response JSON in *out; 1 with "CODE: message" (a gRPC
// error) or 2 with a usage problem in *err.
int Call(grpc::GenericStub& stub, const std::string& method_arg, const std::string& request_json,
         int timeout_s, std::string* out, std::string* err) {
  const size_t dot = method_arg.find('.');
  // Referenced so the linker keeps csi.pb.cc, which registers csi.v1 in the pool.
  const auto* pool = ::csi::v1::GetPluginInfoRequest::descriptor()->file()->pool();
  const auto* service = dot == std::string::npos
                            ? nullptr
                            : pool->FindServiceByName("csi.v1." + method_arg.substr(0, dot));
  const auto* method = service ? service->FindMethodByName(method_arg.substr(dot + 1)) : nullptr;
  if (method == nullptr) {
    *err = "csi-call: no method " + method_arg + " in csi.v1";
    return 2;
  }
  auto* factory = google::protobuf::MessageFactory::generated_factory();
  std::unique_ptr<google::protobuf::Message> request(
      factory->GetPrototype(method->input_type())->New());
  std::unique_ptr<google::protobuf::Message> response(
      factory->GetPrototype(method->output_type())->New());
  auto parsed = google::protobuf::util::JsonStringToMessage(request_json, request.get());
  if (!parsed.ok()) {
    *err = "csi-call: bad request JSON for " + method->input_type()->full_name() + ": " +
           parsed.ToString();
    return 2;
  }

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s));
  const std::string wire = request->SerializeAsString();
  grpc::Slice slice(wire);
  grpc::ByteBuffer request_buf(&slice, 1);
  grpc::ByteBuffer response_buf;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  const std::string path = "/" + service->full_name() + "/" + method->name();
  stub.UnaryCall(&context, path, grpc::StubOptions(), &request_buf, &response_buf,
                 [&](grpc::Status s) {
                   std::lock_guard lock(mu);
                   status = std::move(s);
                   done = true;
                   cv.notify_one();
                 });
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done; });
  }
  if (!status.ok()) {
    *err = std::string(CodeName(status.error_code())) + ": " + status.error_message();
    return 1;
  }
  std::vector<grpc::Slice> slices;
  if (!response_buf.Dump(&slices).ok()) {
    *err = "csi-call: cannot read the response";
    return 1;
  }
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (!response->ParseFromString(bytes)) {
    *err = "csi-call: the response is not a " + method->output_type()->full_name();
    return 1;
  }
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  out->clear();
  (void)google::protobuf::util::MessageToJsonString(*response, out, options);
  return 0;
}

// --batch: one call per stdin line "Service.Method <request JSON>", all on one channel
// (as csi-sanity makes every call on one connection), each answered by one stdout line:
// "OK <response JSON>" or "CODE: message" (newlines in the message made spaces). A shell
// keeps it running behind two FIFOs and saves a process start per call, which under the
// vm-tests' TCG costs about as much as the call.
int Batch(grpc::GenericStub& stub, int timeout_s) {
  char* line = nullptr;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, stdin)) >= 0) {
    std::string l(line, static_cast<size_t>(n));
    while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
    if (l.empty()) continue;
    const size_t sp = l.find(' ');
    const std::string method = l.substr(0, sp);
    const std::string json = sp == std::string::npos ? "{}" : l.substr(sp + 1);
    std::string out, err;
    std::string reply = Call(stub, method, json, timeout_s, &out, &err) == 0 ? "OK " + out : err;
    for (char& c : reply) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    std::printf("%s\n", reply.c_str());
    std::fflush(stdout);
  }
  std::free(line);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string endpoint = "unix:///csi/csi.sock";
  int timeout_s = 600;
  bool batch = false;
  std::string method_arg;
  std::string request_json = "{}";
  int positional = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--endpoint" && i + 1 < argc) {
      endpoint = argv[++i];
    } else if (a == "--timeout-s" && i + 1 < argc) {
      timeout_s = std::atoi(argv[++i]);
    } else if (a == "--batch") {
      batch = true;
    } else if (a.rfind("--", 0) == 0) {
      return Usage();
    } else if (positional == 0) {
      method_arg = a;
      ++positional;
    } else if (positional == 1) {
      request_json = a;
      ++positional;
    } else {
      return Usage();
    }
  }
  if (batch == (positional > 0)) return Usage();

  std::string target = endpoint;
  if (target.rfind("unix://", 0) == 0) target = "unix:" + target.substr(7);
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  if (batch) return Batch(stub, timeout_s);
  std::string out, err;
  const int rc = Call(stub, method_arg, request_json, timeout_s, &out, &err);
  if (rc == 0) {
    std::printf("%s\n", out.c_str());
  } else {
    std::fprintf(stderr, "%s\n", err.c_str());
  }
  return rc;
}
