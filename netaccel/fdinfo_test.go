package netaccel

import "testing"

// The fdinfo lines sharingFdinfo decides on: a file's own "ino" (decimal)
// and an epoll instance's registrations (hex, in "tfd" lines).
func TestFdinfoParsing(t *testing.T) {
	sock := []byte("pos:\t0\nflags:\t02000002\nmnt_id:\t10\nino:\t1939658\n")
	epoll := []byte("pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\n" +
		"tfd:        3 events:       1f data:                3  pos:0 ino:1d98ca sdev:9\n" +
		"tfd:        5 events:       19 data:                5  pos:0 ino:1d98cab sdev:9\n")
	if n, ok := fdinfoIno(sock); !ok || n != 1939658 {
		t.Errorf("fdinfoIno(socket) = %d, %v; want 1939658", n, ok)
	}
	if n, ok := fdinfoIno(epoll); !ok || n != 1038 {
		t.Errorf("fdinfoIno(epoll) = %d, %v; want its own 1038, not a registered file's", n, ok)
	}
	if _, ok := fdinfoIno([]byte("pos:\t0\nflags:\t02\n")); ok {
		t.Errorf("fdinfoIno found an ino in an fdinfo without one (Linux < 5.14)")
	}
	for _, tc := range []struct {
		ino  uint64
		want bool
	}{
		{0x1d98ca, true},
		{0x1d98cab, true},
		{0x1d98c, false}, // a prefix of a registered inode
		{0x1d98cabc, false},
		{1038, false},
	} {
		if got := registered(epoll, tc.ino); got != tc.want {
			t.Errorf("registered(%x) = %v, want %v", tc.ino, got, tc.want)
		}
	}
	if registered(sock, 1939658) {
		t.Errorf("a socket's fdinfo counts as an epoll registration")
	}
}
