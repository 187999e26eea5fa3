# shellcheck shell=sh
# vm-test tls: the kernel's NBD client over mutual TLS. portalbd runs with tls = "require"
# and a tls_ca; nbd-client attaches /dev/nbd0 with -certfile -keyfile -cacertfile
# -tlshostname, ext4 is made, written and synced, and after a disconnect and a new TLS
# connection the file reads back with the same checksum. A client with no certificate, one
# with a certificate another CA signed, and a plaintext client all fail to attach, and
# nbd-client refuses a server whose certificate does not name -tlshostname.
# The kernel has no TLS for NBD: nbd-client does STARTTLS and the whole handshake in user
# space with GnuTLS, then hands the kernel one end of a unix socketpair and stays behind as
# a relay between that socketpair and the TLS connection. Checked below: the established
# TCP connection to portalbd belongs to an nbd-client process reparented to init (a
# daemonized child, not the process /sys/block/nbd0/pid names, which configured the device
# and exited) that also holds a unix socket. Every request the kernel sends crosses it.
# memory-mib: 2048
# timeout-s: 240

# Certificates, made here with the openssl CLI as tests/interop/test_tls.py makes them
# (EC P-256: fast to generate even under TCG).
pki=/tmp/pki
mkdir -p "$pki"
ca() { # NAME: NAME-cert.pem, NAME-key.pem
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$pki/$1-key.pem" -out "$pki/$1-cert.pem" -subj "/CN=$1"
}
leaf() { # CA NAME CN EXTENSIONS: NAME-cert.pem, NAME-key.pem signed by CA
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$pki/$2-key.pem" -out "$pki/$2.csr" -subj "/CN=$3" &&
    printf '%b' "$4" >"$pki/$2.ext" &&
    openssl x509 -req -in "$pki/$2.csr" -CA "$pki/$1-cert.pem" -CAkey "$pki/$1-key.pem" \
      -CAcreateserial -days 2 -extfile "$pki/$2.ext" -out "$pki/$2-cert.pem"
}
run ca ca
run leaf ca server localhost 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
run leaf ca client client1 'extendedKeyUsage=clientAuth\n'
# A client certificate from a CA portalbd does not trust.
run ca rogue
run leaf rogue intruder client1 'extendedKeyUsage=clientAuth\n'

cat >/tmp/portalbd.toml <<EOF
[nbd]
tls = "require"
tls_cert = "$pki/server-cert.pem"
tls_key = "$pki/server-key.pem"
tls_ca = "$pki/ca-cert.pem"
EOF

# nbd-client ARGS... /dev/nbd0, then waits for the kernel to see the size.
attach() {
  nbd-client -N portalbd "$NBD_HOST" "$NBD_PORT" /dev/nbd0 "$@" || return 1
  i=0
  while [ "$(_sysfs_size /dev/nbd0)" = 0 ]; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "/dev/nbd0 still has no size 10 s after connecting"; return 1; }
    sleep 0.1
  done
}
tls_attach() {
  attach -certfile "$pki/client-cert.pem" -keyfile "$pki/client-key.pem" \
    -cacertfile "$pki/ca-cert.pem" -tlshostname localhost
}
detached() { [ "$(_sysfs_size /dev/nbd0)" = 0 ]; }
# check_fails for an attach, then shows on the console why nbd-client gave up and what
# portalbd logged.
refused() {
  lines=$(wc -l <"$PORTALBD_LOG")
  check_fails "$@"
  echo "## nbd-client said: $(grep -v '^ *$' "$VMTEST_OUT" | tail -n 2 | tr '\n' ' ')"
  echo "## portalbd logged: $(tail -n "+$((lines + 1))" "$PORTALBD_LOG" | cut -d' ' -f2- | tr '\n' ' ')"
}

# The client's TCP connection to portalbd's port belongs to a process named nbd-client
# that also holds a unix socket (its end of the socketpair the kernel was given). Prints
# what it found.
relay_is_userspace() {
  ino=$(awk -v p=":$(printf '%04X' "$NBD_PORT")" '$3 ~ p"$" && $4 == "01" { print $10 }' /proc/net/tcp)
  [ -n "$ino" ] || { echo "no established TCP connection to port $NBD_PORT"; return 1; }
  for fd in /proc/[0-9]*/fd/*; do
    [ "$(readlink "$fd" 2>/dev/null)" = "socket:[$ino]" ] || continue
    pid=${fd#/proc/}
    pid=${pid%%/*}
    unix=0
    for f in "/proc/$pid/fd"/*; do
      s=$(readlink "$f" | sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p')
      [ -z "$s" ] || ! grep -qE " $s( |\$)" /proc/net/unix || unix=1
    done
    echo "TCP connection to port $NBD_PORT held by pid $pid ($(cat "/proc/$pid/comm")," \
      "parent $(awk '{ print $4 }' "/proc/$pid/stat"), unix socket: $unix);" \
      "/sys/block/nbd0/pid: $(cat /sys/block/nbd0/pid)"
    [ "$(cat "/proc/$pid/comm")" = nbd-client ] && [ $unix = 1 ]
    return
  done
  echo "no process holds the TCP connection (inode $ino)"
  return 1
}

check "portalbd starts with tls = require and a tls_ca" \
  portalbd_start --disk-size-gb 1 --config /tmp/portalbd.toml
check "nbd-client attaches over TLS (-certfile -keyfile -cacertfile -tlshostname)" tls_attach
check_eq "kernel sees the device size" "$(dev_size /dev/nbd0)" 1073741824
check "nbd-client relays TLS in user space for a unix socket the kernel holds" relay_is_userspace
echo "## $(cat "$VMTEST_OUT")"
check "mkfs.ext4 on /dev/nbd0 over TLS" mkfs.ext4 -q -F /dev/nbd0
check "mount ext4" mount -t ext4 /dev/nbd0 /mnt
run random_file /tmp/data 10
sum=$(sha /tmp/data)
check "write 10 MiB of random data" cp /tmp/data /mnt/data
check "sync" sync
check "umount" umount /mnt
check "disconnect" nbd_disconnect /dev/nbd0
run drop_caches

refused "nbd-client without a certificate cannot attach" \
  attach -enable-tls -cacertfile "$pki/ca-cert.pem" -tlshostname localhost
check "/dev/nbd0 stays detached" detached
refused "nbd-client with a certificate another CA signed cannot attach" \
  attach -certfile "$pki/intruder-cert.pem" -keyfile "$pki/intruder-key.pem" \
  -cacertfile "$pki/ca-cert.pem" -tlshostname localhost
check "/dev/nbd0 stays detached" detached
refused "plaintext nbd-client cannot attach under require" attach
check "/dev/nbd0 stays detached" detached
refused "nbd-client refuses a server certificate not for -tlshostname" \
  attach -certfile "$pki/client-cert.pem" -keyfile "$pki/client-key.pem" \
  -cacertfile "$pki/ca-cert.pem" -tlshostname not-the-server
check "/dev/nbd0 stays detached" detached

check "reattach over TLS" tls_attach
check "mount again" mount -t ext4 /dev/nbd0 /mnt
check_eq "checksum of the data after reattaching" "$(sha /mnt/data)" "$sum"
check "umount" umount /mnt
check "e2fsck -fn is clean" e2fsck -fn /dev/nbd0
check "disconnect" nbd_disconnect /dev/nbd0
check "portalbd exits 0 on SIGTERM" portalbd_stop
