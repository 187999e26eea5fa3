// csi-call: one CSI call from the shell, for tests (vm-tests' guest has no python grpc).
//
//   csi-call --endpoint unix:///csi/csi.sock Node.NodeStageVolume '{"volumeId":"v1",...}'
//
// The request is protobuf JSON of the method's request message (csi.v1); the response is
// printed on stdout as JSON (fields with default values included), exit 0. A gRPC error
// prints "CODE: message" on stderr (CODE as in grpc::StatusCode's names: NOT_FOUND, ...)
// and exits 1; a usage error exits 2. Not installed: a test tool.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

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
               "'<request JSON>'\n  Service: Identity, Controller or Node (package csi.v1)\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string endpoint = "unix:///csi/csi.sock";
  int timeout_s = 600;
  std::string method_arg;
  std::string request_json = "{}";
  int positional = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--endpoint" && i + 1 < argc) {
      endpoint = argv[++i];
    } else if (a == "--timeout-s" && i + 1 < argc) {
      timeout_s = std::atoi(argv[++i]);
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
  const size_t dot = method_arg.find('.');
  if (dot == std::string::npos) return Usage();

  // Referenced so the linker keeps csi.pb.cc, which registers csi.v1 in the pool.
  const auto* pool = ::csi::v1::GetPluginInfoRequest::descriptor()->file()->pool();
  const auto* service = pool->FindServiceByName("csi.v1." + method_arg.substr(0, dot));
  const auto* method = service ? service->FindMethodByName(method_arg.substr(dot + 1)) : nullptr;
  if (method == nullptr) {
    std::fprintf(stderr, "csi-call: no method %s in csi.v1\n", method_arg.c_str());
    return 2;
  }
  auto* factory = google::protobuf::MessageFactory::generated_factory();
  std::unique_ptr<google::protobuf::Message> request(
      factory->GetPrototype(method->input_type())->New());
  std::unique_ptr<google::protobuf::Message> response(
      factory->GetPrototype(method->output_type())->New());
  auto parsed = google::protobuf::util::JsonStringToMessage(request_json, request.get());
  if (!parsed.ok()) {
    std::fprintf(stderr, "csi-call: bad request JSON for %s: %s\n",
                 method->input_type()->full_name().c_str(), parsed.ToString().c_str());
    return 2;
  }

  std::string target = endpoint;
  if (target.rfind("unix://", 0) == 0) target = "unix:" + target.substr(7);
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
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
    std::fprintf(stderr, "%s: %s\n", CodeName(status.error_code()), status.error_message().c_str());
    return 1;
  }
  std::vector<grpc::Slice> slices;
  if (!response_buf.Dump(&slices).ok()) {
    std::fprintf(stderr, "csi-call: cannot read the response\n");
    return 1;
  }
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (!response->ParseFromString(bytes)) {
    std::fprintf(stderr, "csi-call: the response is not a %s\n",
                 method->output_type()->full_name().c_str());
    return 1;
  }
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(*response, &json, options);
  std::printf("%s\n", json.c_str());
  return 0;
}
