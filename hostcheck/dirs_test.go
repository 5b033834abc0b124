package hostcheck

import "testing"

func TestDirVerdict(t *testing.T) {
	const gib = 1 << 30
	mine := dirInfo{path: "/run/user/1000/rabbitc", exists: true, isDir: true, owner: 1000, mode: 0o700, base: "/run/user/1000/rabbitc", writable: true, free: 2 * gib}
	with := func(f func(*dirInfo)) dirInfo { d := mine; f(&d); return d }
	for _, tc := range []struct {
		d    dirInfo
		want string
	}{
		{mine, "ok       state: /run/user/1000/rabbitc, yours, mode 0700, 2.0 GiB free"},
		{with(func(d *dirInfo) { d.exists, d.base = false, "/run/user/1000" }),
			"ok       state: /run/user/1000/rabbitc, made when needed (2.0 GiB free on /run/user/1000)"},
		{with(func(d *dirInfo) { d.owner = 0 }),
			"error    state: /run/user/1000/rabbitc belongs to uid 0, not to you (uid 1000) — fix (as root): chown -R 1000:1000 /run/user/1000/rabbitc"},
		{with(func(d *dirInfo) { d.isDir = false }),
			"error    state: /run/user/1000/rabbitc is not a directory — fix: rm /run/user/1000/rabbitc"},
		{with(func(d *dirInfo) { d.exists, d.base, d.writable = false, "/run/user", false }),
			"error    state: /run/user/1000/rabbitc does not exist, and you cannot make it in /run/user — fix (as root): mkdir -p /run/user/1000/rabbitc && chown -R 1000:1000 /run/user/1000/rabbitc"},
		{with(func(d *dirInfo) { d.mode = 0o755 }),
			"warning  state: /run/user/1000/rabbitc is mode 0755: other users can look inside — fix: chmod 0700 /run/user/1000/rabbitc"},
		{with(func(d *dirInfo) { d.free = 5 << 20 }),
			"warning  state: /run/user/1000/rabbitc: only 5.0 MiB free on /run/user/1000/rabbitc — fix: make room on /run/user/1000/rabbitc"},
	} {
		if got := dirVerdict("state", tc.d, 1000, 1000, 16<<20).String(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 bytes", 1023: "1023 bytes", 1536: "1.5 KiB", 200 << 20: "200 MiB", 3 << 30: "3.0 GiB"} {
		if got := size(n); got != want {
			t.Errorf("size(%d) = %q, want %q", n, got, want)
		}
	}
}
