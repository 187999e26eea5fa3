#include "nbdlink/nbdlink.h"

#include <linux/nbd-netlink.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>

#include <charconv>
#include <memory>

#include <fmt/format.h>

namespace portal::nbdlink {
namespace {

// libnl errors become Status here and only here. The kernel's errno arrives mapped to
// an NLE_* code (EBUSY -> NLE_BUSY, EPERM -> NLE_PERM, EINVAL -> NLE_INVAL).
Status FromNl(int err, const std::string& what) {
  const std::string m = fmt::format("{}: {}", what, nl_geterror(err));
  switch (-err) {
    case NLE_BUSY:
    case NLE_EXIST:
      return Status::Busy(m);
    case NLE_PERM:
    case NLE_NOACCESS:
      return Status::PermissionDenied(m + " (needs CAP_SYS_ADMIN)");
    case NLE_OBJ_NOTFOUND:
    case NLE_NODEV:
      return Status::NotFound(m);
    case NLE_INVAL:
    case NLE_RANGE:
      return Status::InvalidArgument(m);
    default:
      return Status::IOError(m);
  }
}

struct SockDeleter {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
struct MsgDeleter {
  void operator()(nl_msg* m) const { nlmsg_free(m); }
};
using Sock = std::unique_ptr<nl_sock, SockDeleter>;
using Msg = std::unique_ptr<nl_msg, MsgDeleter>;

// A connected generic netlink socket and the nbd family's id.
Status Open(const std::string& what, Sock* sock, int* family) {
  sock->reset(nl_socket_alloc());
  if (!*sock) return Status::IOError(what + ": out of memory");
  if (int err = genl_connect(sock->get()); err < 0) return FromNl(err, what + ": netlink");
  *family = genl_ctrl_resolve(sock->get(), NBD_GENL_FAMILY_NAME);
  if (*family < 0) {
    return Status::NotSupported(
        what + ": the kernel has no NBD netlink family (is the nbd module loaded? modprobe nbd)");
  }
  return Status::Ok();
}

Result<Msg> NewMessage(int family, uint8_t cmd, const std::string& what) {
  Msg msg(nlmsg_alloc());
  if (!msg || !genlmsg_put(msg.get(), NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, 0, cmd, 0)) {
    return Status::IOError(what + ": cannot build the netlink message");
  }
  return msg;
}

Status PutSocket(nl_msg* msg, int fd) {
  nlattr* socks = nla_nest_start(msg, NBD_ATTR_SOCKETS);
  nlattr* item = socks ? nla_nest_start(msg, NBD_SOCK_ITEM) : nullptr;
  if (!item || nla_put_u32(msg, NBD_SOCK_FD, static_cast<uint32_t>(fd)) < 0) {
    return Status::IOError("cannot build the netlink message");
  }
  nla_nest_end(msg, item);
  nla_nest_end(msg, socks);
  return Status::Ok();
}

int ConnectReply(nl_msg* msg, void* arg) {
  nlattr* attrs[NBD_ATTR_MAX + 1];
  if (genlmsg_parse(nlmsg_hdr(msg), 0, attrs, NBD_ATTR_MAX, nullptr) == 0 &&
      attrs[NBD_ATTR_INDEX]) {
    *static_cast<int*>(arg) = static_cast<int>(nla_get_u32(attrs[NBD_ATTR_INDEX]));
  }
  return NL_OK;
}

struct StatusArg {
  int index;
  bool configured = false;
};

int StatusReply(nl_msg* msg, void* arg) {
  auto* s = static_cast<StatusArg*>(arg);
  nlattr* attrs[NBD_ATTR_MAX + 1];
  if (genlmsg_parse(nlmsg_hdr(msg), 0, attrs, NBD_ATTR_MAX, nullptr) != 0 ||
      !attrs[NBD_ATTR_DEVICE_LIST]) {
    return NL_OK;
  }
  nlattr* item;
  int rem;
  nla_for_each_nested(item, attrs[NBD_ATTR_DEVICE_LIST], rem) {
    if (nla_type(item) != NBD_DEVICE_ITEM) continue;
    nlattr* dev[NBD_DEVICE_ATTR_MAX + 1];
    if (nla_parse_nested(dev, NBD_DEVICE_ATTR_MAX, item, nullptr) != 0) continue;
    if (!dev[NBD_DEVICE_INDEX] || !dev[NBD_DEVICE_CONNECTED]) continue;
    if (static_cast<int>(nla_get_u32(dev[NBD_DEVICE_INDEX])) == s->index) {
      s->configured = nla_get_u8(dev[NBD_DEVICE_CONNECTED]) != 0;
    }
  }
  return NL_OK;
}

// The kernel takes seconds; 0 would mean "no timeout" (never requeue, wait forever).
uint64_t AtLeastOne(uint64_t s) { return s == 0 ? 1 : s; }

}  // namespace

std::string DevicePath(int index) { return fmt::format("/dev/nbd{}", index); }

Result<int> ParseDevicePath(const std::string& path) {
  constexpr std::string_view kPrefix = "/dev/nbd";
  int index = -1;
  if (path.starts_with(kPrefix) && path.size() > kPrefix.size() && path.size() < 20) {
    const char* b = path.data() + kPrefix.size();
    const char* e = path.data() + path.size();
    auto [p, ec] = std::from_chars(b, e, index);
    if (ec == std::errc() && p == e && index >= 0 && (*b != '0' || e - b == 1)) return index;
  }
  return Status::InvalidArgument(
      fmt::format("'{}' is not an NBD device path (/dev/nbdN)", path));
}

Result<int> Connect(const ConnectParams& p) {
  const std::string what =
      p.index < 0 ? std::string("NBD connect") : "NBD connect of " + DevicePath(p.index);
  Sock sock;
  int family = -1;
  if (Status st = Open(what, &sock, &family); !st.ok()) return st;
  ASSIGN_OR_RETURN(Msg msg, NewMessage(family, NBD_CMD_CONNECT, what));
  nl_msg* m = msg.get();
  if (p.index >= 0) NLA_PUT_U32(m, NBD_ATTR_INDEX, static_cast<uint32_t>(p.index));
  NLA_PUT_U64(m, NBD_ATTR_SIZE_BYTES, p.size_bytes);
  NLA_PUT_U64(m, NBD_ATTR_BLOCK_SIZE_BYTES, p.block_size);
  NLA_PUT_U64(m, NBD_ATTR_SERVER_FLAGS, p.server_flags);
  NLA_PUT_U64(m, NBD_ATTR_TIMEOUT, AtLeastOne(p.io_timeout_s));
  // None: a dead connection fails the I/O at once.
  if (p.dead_conn_timeout_s > 0) NLA_PUT_U64(m, NBD_ATTR_DEAD_CONN_TIMEOUT, p.dead_conn_timeout_s);
  if (!p.backend.empty()) NLA_PUT_STRING(m, NBD_ATTR_BACKEND_IDENTIFIER, p.backend.c_str());
  if (Status st = PutSocket(m, p.socket_fd); !st.ok()) return st.WithContext(what);
  {
    int index = -1;
    nl_socket_modify_cb(sock.get(), NL_CB_VALID, NL_CB_CUSTOM, ConnectReply, &index);
    // nl_send_sync frees the message.
    int err = nl_send_sync(sock.get(), msg.release());
    if (err < 0) return FromNl(err, what);
    if (index < 0) index = p.index;
    if (index < 0) return Status::IOError(what + ": the kernel did not say which device");
    return index;
  }
nla_put_failure:
  return Status::IOError(what + ": cannot build the netlink message");
}

Status Reconfigure(int index, const std::string& backend, int socket_fd,
                   std::optional<uint64_t> size_bytes) {
  const std::string what = "NBD reconfigure of " + DevicePath(index);
  Sock sock;
  int family = -1;
  if (Status st = Open(what, &sock, &family); !st.ok()) return st;
  ASSIGN_OR_RETURN(Msg msg, NewMessage(family, NBD_CMD_RECONFIGURE, what));
  nl_msg* m = msg.get();
  NLA_PUT_U32(m, NBD_ATTR_INDEX, static_cast<uint32_t>(index));
  if (!backend.empty()) NLA_PUT_STRING(m, NBD_ATTR_BACKEND_IDENTIFIER, backend.c_str());
  if (size_bytes) NLA_PUT_U64(m, NBD_ATTR_SIZE_BYTES, *size_bytes);
  if (socket_fd >= 0) {
    if (Status st = PutSocket(m, socket_fd); !st.ok()) return st.WithContext(what);
  }
  if (int err = nl_send_sync(sock.get(), msg.release()); err < 0) return FromNl(err, what);
  return Status::Ok();
nla_put_failure:
  return Status::IOError(what + ": cannot build the netlink message");
}

Status Disconnect(int index) {
  const std::string what = "NBD disconnect of " + DevicePath(index);
  Sock sock;
  int family = -1;
  if (Status st = Open(what, &sock, &family); !st.ok()) return st;
  ASSIGN_OR_RETURN(Msg msg, NewMessage(family, NBD_CMD_DISCONNECT, what));
  NLA_PUT_U32(msg.get(), NBD_ATTR_INDEX, static_cast<uint32_t>(index));
  if (int err = nl_send_sync(sock.get(), msg.release()); err < 0) return FromNl(err, what);
  return Status::Ok();
nla_put_failure:
  return Status::IOError(what + ": cannot build the netlink message");
}

Result<bool> Configured(int index) {
  const std::string what = "NBD status of " + DevicePath(index);
  Sock sock;
  int family = -1;
  if (Status st = Open(what, &sock, &family); !st.ok()) return st;
  ASSIGN_OR_RETURN(Msg msg, NewMessage(family, NBD_CMD_STATUS, what));
  NLA_PUT_U32(msg.get(), NBD_ATTR_INDEX, static_cast<uint32_t>(index));
  {
    StatusArg arg{index};
    nl_socket_modify_cb(sock.get(), NL_CB_VALID, NL_CB_CUSTOM, StatusReply, &arg);
    if (int err = nl_send_sync(sock.get(), msg.release()); err < 0) return FromNl(err, what);
    return arg.configured;
  }
nla_put_failure:
  return Status::IOError(what + ": cannot build the netlink message");
}

}  // namespace portal::nbdlink
