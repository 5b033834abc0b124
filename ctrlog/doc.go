// Package ctrlog owns a detached container's log: the file its monitor
// writes the payload's stdout and stderr into, and the reading of it that
// `rabbitc logs` does (tail, timestamps, follow).
//
// # Format
//
// One file per container, ctr.log in its state directory, in podman's
// k8s-file format (the CRI log format): one record a line,
//
//	2026-12-07T05:40:00.123456789Z stdout F hello
//	2026-12-07T05:40:00.123501234Z stderr P Password:
//
// a UTC timestamp with nine fractional digits, the stream (stdout or
// stderr), F for a record that ends a line or P for one that does not (a
// chunk the payload wrote without a newline, or a piece of a line longer
// than MaxLine), one space, and the content without its newline. Joining
// the contents of a stream's records, with a newline after each F, gives
// back the bytes the payload wrote, whatever they were: only '\n' ends a
// record, and it is never part of a content. The reader accepts any
// RFC 3339 timestamp (podman's conmon writes local time with an offset) and
// skips lines it cannot parse.
//
// # Size
//
// A log holds at most two files of maxSize bytes each (DefaultMaxSize,
// 10 MiB, unless Open is told otherwise): when a record would take ctr.log
// past maxSize, ctr.log is renamed to ctr.log.1, replacing the previous
// one, and a new ctr.log is started. Readers read ctr.log.1, then ctr.log.
// What was in the replaced ctr.log.1 is gone.
// A file holds at least one record, so a maxSize below MaxLine plus a
// header can be passed by one record. A follower looks for new records
// every 100 ms: should ctr.log be rotated more than twice between two
// looks (with the default size, 20 MiB of output in 100 ms), it misses the
// files in between.
//
// # Writing never stops the container
//
// The monitor's copier goroutines write through Log.Stream, which never
// returns an error and never waits for anything but the other stream's
// write(2): a record that cannot be written (a full disk) is counted and
// dropped, so the payload's pipes keep draining. The first write that
// succeeds afterwards is preceded by one stderr record saying how many
// were dropped and why. Each Write call costs one write(2) (its records
// together), no fsync: the log is for people, not a journal.
//
// # Use
//
//	l, err := ctrlog.Open(filepath.Join(stateDir, "ctr.log"), 0)
//	go ctrlog.Copy(l.Stream("stdout"), stdoutPipe)
//	go ctrlog.Copy(l.Stream("stderr"), stderrPipe)
//	... both copies returned ...
//	l.Close()
//
//	err := ctrlog.Read(os.Stdout, os.Stderr, path, ctrlog.ReadOptions{Tail: -1, Follow: true, Done: gone})
//
// It imports no other package of rabbitc and knows nothing of containers
// beyond the two streams.
package ctrlog
