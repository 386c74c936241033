#!/bin/sh
# Regenerates the captures in this directory from real loopback traffic
# (needs root for dumpcap, python3, editcap). See README.md for contents.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Two interfaces in one pcapng: lo (Ethernet) and any (Linux cooked v2).
dumpcap -q -i lo -f 'port 40000 or port 40001' -i any -y LINUX_SLL2 -f 'port 40000 or port 40001' \
	-a duration:4 -w "$tmp/two.pcapng" &
pids=$!
# The same traffic as classic pcap: lo (Ethernet), and any in Linux cooked v1.
dumpcap -q -P -i lo -f 'port 40000 or port 40001' -a duration:4 -w "$tmp/lo.pcap" &
pids="$pids $!"
dumpcap -q -P -i any -y LINUX_SLL -f 'port 40000 or port 40001' -a duration:4 -w "$tmp/sll.pcap" &
pids="$pids $!"
sleep 1.5
python3 - <<'PY'
import socket, time
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    rx = socket.socket(fam, socket.SOCK_DGRAM); rx.bind((host, 40001))
    tx = socket.socket(fam, socket.SOCK_DGRAM); tx.bind((host, 40000))
    for i in range(5):
        tx.sendto(b"voxbridge %s %d" % (host.encode(), i), (host, 40001))
        rx.recv(100)
        time.sleep(0.01)
    rx.close(); tx.close()
# One TCP exchange, which the reader must skip.
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 40001)); srv.listen()
c = socket.create_connection(("127.0.0.1", 40001))
s, _ = srv.accept(); c.sendall(b"tcp"); s.recv(10); c.close(); s.close(); srv.close()
PY
wait $pids
cp "$tmp/two.pcapng" lo-any.pcapng
cp "$tmp/lo.pcap" lo-ethernet-usec.pcap
editcap -F nsecpcap "$tmp/sll.pcap" any-sll-nsec.pcap
