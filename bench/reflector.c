/* A do-nothing DNS "server": echoes each query back with QR set, using plain
 * recvfrom/sendto. bench/fastpath.sh runs it beside steerdns to show the kernel's own
 * cost of a loopback UDP query on this machine: the floor any server pays. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 5391;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("reflector");
        return 1;
    }
    unsigned char buf[4096];
    for (;;) {
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n < 12) continue;
        buf[2] |= 0x80;
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, len);
    }
}
