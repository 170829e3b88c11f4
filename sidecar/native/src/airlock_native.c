// airlock_native: the one thing the sidecar needs from C. A connection captured by the nat
// OUTPUT REDIRECT rule arrives at 127.0.0.1:15900 (or [::1]:15900); the address the agent
// actually dialled is kept by conntrack and read back with getsockopt(SO_ORIGINAL_DST) for IPv4
// or getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST) for IPv6.
//
// Written against Node-API (node_api.h) only, so a single build loads in every Node version
// that supports NAPI_VERSION 8 (Node >= 12.22 / 14.17 / 16) without recompiling.
//
// JavaScript API:
//   original_dst(fd: number) -> { address: string, port: number, family: 4 | 6 }
//   throws Error with .code set to the errno name ("ENOENT" when the socket was not
//   redirected / has no conntrack entry, "EBADF", "ENOTSOCK", ...) and .syscall "getsockopt".
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

// From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>; those headers clash
// with glibc's <netinet/in.h>, and the values are fixed kernel ABI.
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

#define CHECK(env, call)                                                       \
  do {                                                                         \
    if ((call) != napi_ok) {                                                   \
      const napi_extended_error_info* info_ = NULL;                            \
      napi_get_last_error_info((env), &info_);                                 \
      bool pending_ = false;                                                   \
      napi_is_exception_pending((env), &pending_);                             \
      if (!pending_)                                                           \
        napi_throw_error((env), NULL,                                          \
                         info_ && info_->error_message ? info_->error_message  \
                                                       : "node-api call failed"); \
      return NULL;                                                             \
    }                                                                          \
  } while (0)

static const char* errno_name(int err) {
  switch (err) {
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case ENOTSOCK: return "ENOTSOCK";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EINVAL: return "EINVAL";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EPERM: return "EPERM";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    default: return "EUNKNOWN";
  }
}

static napi_value throw_errno(napi_env env, int err, const char* what) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s (%s)", what, strerror(err), errno_name(err));
  napi_value msg, code, syscall, errno_value, error;
  if (napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code) != napi_ok) return NULL;
  if (napi_create_error(env, code, msg, &error) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, "getsockopt", NAPI_AUTO_LENGTH, &syscall) == napi_ok)
    napi_set_named_property(env, error, "syscall", syscall);
  if (napi_create_int32(env, -err, &errno_value) == napi_ok)
    napi_set_named_property(env, error, "errno", errno_value);
  napi_throw(env, error);
  return NULL;
}

static napi_value make_result(napi_env env, const char* address, uint16_t port, int family) {
  napi_value result, addr, port_value, family_value;
  CHECK(env, napi_create_object(env, &result));
  CHECK(env, napi_create_string_utf8(env, address, NAPI_AUTO_LENGTH, &addr));
  CHECK(env, napi_create_uint32(env, port, &port_value));
  CHECK(env, napi_create_uint32(env, (uint32_t)family, &family_value));
  CHECK(env, napi_set_named_property(env, result, "address", addr));
  CHECK(env, napi_set_named_property(env, result, "port", port_value));
  CHECK(env, napi_set_named_property(env, result, "family", family_value));
  return result;
}

static napi_value original_dst(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, cbinfo, &argc, argv, NULL, NULL));
  if (argc < 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "original_dst(fd): fd is required");
    return NULL;
  }
  napi_valuetype type;
  CHECK(env, napi_typeof(env, argv[0], &type));
  if (type != napi_number) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "original_dst(fd): fd must be a number");
    return NULL;
  }
  int32_t fd = -1;
  CHECK(env, napi_get_value_int32(env, argv[0], &fd));
  if (fd < 0) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "original_dst(fd): fd must be >= 0");
    return NULL;
  }

  // The family of the accepting socket decides which option to ask for. An IPv4 connection
  // accepted on a dual-stack IPv6 socket has a v4-mapped local address and an IPv4 conntrack
  // entry: it is read with SOL_IP/SO_ORIGINAL_DST (the kernel routes SOL_IP on a TCPv6 socket to
  // the IPv4 handler).
  struct sockaddr_storage local;
  socklen_t local_len = sizeof local;
  memset(&local, 0, sizeof local);
  if (getsockname(fd, (struct sockaddr*)&local, &local_len) != 0)
    return throw_errno(env, errno, "getsockname");

  int use_v6 = 0;
  if (local.ss_family == AF_INET6) {
    const struct sockaddr_in6* l6 = (const struct sockaddr_in6*)&local;
    use_v6 = !IN6_IS_ADDR_V4MAPPED(&l6->sin6_addr);
  } else if (local.ss_family != AF_INET) {
    return throw_errno(env, EAFNOSUPPORT, "original_dst");
  }

#ifndef __linux__
  (void)use_v6;
  return throw_errno(env, EOPNOTSUPP, "original_dst (SO_ORIGINAL_DST is Linux netfilter only)");
#else
  char text[INET6_ADDRSTRLEN];
  if (use_v6) {
    struct sockaddr_in6 dst;
    socklen_t len = sizeof dst;
    memset(&dst, 0, sizeof dst);
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len) != 0)
      return throw_errno(env, errno, "getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)");
    if (dst.sin6_family != AF_INET6 || !inet_ntop(AF_INET6, &dst.sin6_addr, text, sizeof text))
      return throw_errno(env, EAFNOSUPPORT, "IP6T_SO_ORIGINAL_DST");
    return make_result(env, text, ntohs(dst.sin6_port), 6);
  }
  struct sockaddr_in dst;
  socklen_t len = sizeof dst;
  memset(&dst, 0, sizeof dst);
  if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len) != 0)
    return throw_errno(env, errno, "getsockopt(SOL_IP, SO_ORIGINAL_DST)");
  if (dst.sin_family != AF_INET || !inet_ntop(AF_INET, &dst.sin_addr, text, sizeof text))
    return throw_errno(env, EAFNOSUPPORT, "SO_ORIGINAL_DST");
  return make_result(env, text, ntohs(dst.sin_port), 4);
#endif
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  CHECK(env, napi_create_function(env, "original_dst", NAPI_AUTO_LENGTH, original_dst, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "original_dst", fn));
  napi_value version;
  CHECK(env, napi_create_uint32(env, 1, &version));
  CHECK(env, napi_set_named_property(env, exports, "abiVersion", version));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
