// Command rabbitbench measures rabbitc beside its peers (unshare floors,
// bwrap, crun, runc, RootlessKit, podman, pasta) in one run and writes one
// table of medians, minimums, maximums and ratios as text, Markdown and CSV.
//
// Every measurement alternates the contenders inside each round (the order
// rotates from round to round), so that a noisy machine slows all of them
// alike and the ratios stay meaningful. A contender that cannot run here is
// probed once, and the table reports it with the reason instead of dropping it.
//
// It is started by bench/run.sh, which installs the peers, builds rabbitc and
// the bench rootfs, and drops to an unprivileged user; rabbitbench itself
// never needs privileges. The one exception is a helper mode (cap-launcher,
// launcher.go) that run.sh starts with CAP_NET_ADMIN as an ambient
// capability: it runs the bench with no capability and starts, on its
// request, the outbound phase's one labelled rabbitc contender with it.
// Every load is bounded in time (iperf3 -t, wrk -d) and all traffic goes to
// 127.0.0.1, into the namespaces it created, or to the test host that
// run.sh made (a network namespace behind a veth pair), which it checks the
// host routes through that veth.
package main
