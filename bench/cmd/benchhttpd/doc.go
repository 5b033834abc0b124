// Command benchhttpd is the HTTP server that the benchmark runs inside every
// container: a static binary that answers "Hello from rabbitc container" on
// every path, like the seed's demo server, but /peer, where it answers the
// address it sees the client at (the bench checks with it that a published
// port shows the server the client's address).
//
// With -addr auto it listens on the first non-loopback IPv4 address, port 80,
// as the seed's server does; with -wait-fd it reads one byte from that
// descriptor before it listens, which lets the benchmark's slirp4netns floor
// configure the network first. It exits on SIGTERM and SIGINT. It is not part
// of rabbitc.
package main
