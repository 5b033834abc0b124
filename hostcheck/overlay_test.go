package hostcheck

import "testing"

func TestOverlayFailed(t *testing.T) {
	for _, tc := range []struct{ release, want string }{
		{"5.10.0-28-amd64", "error    overlay: x — fix (as root): boot Linux 5.11 or later, with CONFIG_OVERLAY_FS"},
		{"4.19.0", "error    overlay: x — fix (as root): boot Linux 5.11 or later, with CONFIG_OVERLAY_FS"},
		{"5.11.0", "error    overlay: x — fix: keep the image store on ext4, xfs, btrfs or tmpfs: export XDG_DATA_HOME=DIR on one of them"},
		{"6.1.0-18-amd64", "error    overlay: x — fix: keep the image store on ext4, xfs, btrfs or tmpfs: export XDG_DATA_HOME=DIR on one of them"},
		{"weird", "error    overlay: x — fix: keep the image store on ext4, xfs, btrfs or tmpfs: export XDG_DATA_HOME=DIR on one of them"},
	} {
		if got := overlayFailed("x", tc.release).String(); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.release, got, tc.want)
		}
	}
}
