package hostcheck

import (
	"io/fs"
	"testing"
)

func TestParseSubIDs(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []subIDLine
		err  string
	}{
		{"alice:100000:65536\n", []subIDLine{{"alice", 100000, 65536}}, ""},
		{"# comment\n\n  bob:165536:65536  \n1001:231072:10\n", []subIDLine{{"bob", 165536, 65536}, {"1001", 231072, 10}}, ""},
		{"alice:100000:65536\nbroken\n", nil, "line 2 is not NAME:START:COUNT"},
		{"alice:x:65536\n", nil, "line 1 is not NAME:START:COUNT"},
		{":1:2\n", nil, "line 1 is not NAME:START:COUNT"},
		{"alice:-1:2\n", nil, "line 1 is not NAME:START:COUNT"},
	} {
		got, err := parseSubIDs(tc.text)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("parseSubIDs(%q): error %v, want %q", tc.text, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("parseSubIDs(%q) = %v, %v; want %v", tc.text, got, err, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("parseSubIDs(%q)[%d] = %v, want %v", tc.text, i, got[i], tc.want[i])
			}
		}
	}
}

func subFiles(uidText, gidText string) []subIDFile {
	mk := func(name, text string) subIDFile {
		f := subIDFile{name: name, path: "/etc/" + name, add: "--add-" + name + "s", del: "--del-" + name + "s"}
		f.lines, f.err = parseSubIDs(text)
		return f
	}
	return []subIDFile{mk("subuid", uidText), mk("subgid", gidText)}
}

func TestSubIDChecks(t *testing.T) {
	both := "alice:100000:65536\nbob:165536:65536\n"
	for _, tc := range []struct {
		name  string
		user  string
		files []subIDFile
		want  [2]string // the two lines
	}{
		{"healthy", "alice", subFiles(both, both), [2]string{
			"ok       subuid: alice: 100000-165535 (65536 ids)",
			"ok       subgid: alice: 100000-165535 (65536 ids)"}},
		{"by uid", "", subFiles("1000:100000:65536\n", "1000:100000:65536\n"), [2]string{
			"ok       subuid: 1000: 100000-165535 (65536 ids)",
			"ok       subgid: 1000: 100000-165535 (65536 ids)"}},
		{"missing in both: one range after every other, in both", "carol", subFiles(both, "bob:300000:65536\n"), [2]string{
			"error    subuid: no range for carol in /etc/subuid — fix (as root): usermod --add-subuids 365536-431071 --add-subgids 365536-431071 carol",
			"error    subgid: no range for carol in /etc/subgid — fix (as root): usermod --add-subuids 365536-431071 --add-subgids 365536-431071 carol"}},
		{"missing in subgid only", "alice", subFiles(both, "bob:165536:65536\n"), [2]string{
			"ok       subuid: alice: 100000-165535 (65536 ids)",
			"error    subgid: no range for alice in /etc/subgid — fix (as root): usermod --add-subgids 231072-296607 alice"}},
		{"empty files", "alice", subFiles("", ""), [2]string{
			"error    subuid: no range for alice in /etc/subuid — fix (as root): usermod --add-subuids 100000-165535 --add-subgids 100000-165535 alice",
			"error    subgid: no range for alice in /etc/subgid — fix (as root): usermod --add-subuids 100000-165535 --add-subgids 100000-165535 alice"}},
		{"overlap", "alice", subFiles(both+"mallory:165000:1000\n", both), [2]string{
			"error    subuid: alice's range 100000-165535 overlaps mallory's 165000-165999 in /etc/subuid: their containers would share ids — fix (as root): usermod --del-subuids 100000-165535 --add-subuids 231072-296607 alice",
			"ok       subgid: alice: 100000-165535 (65536 ids)"}},
		{"adjacent ranges do not overlap", "bob", subFiles(both, both), [2]string{
			"ok       subuid: bob: 165536-231071 (65536 ids)",
			"ok       subgid: bob: 165536-231071 (65536 ids)"}},
		{"too few", "alice", subFiles("alice:100000:1000\nalice:200000:1000\n", both), [2]string{
			"warning  subuid: alice: 100000-100999, 200000-200999 (2000 ids), fewer than 65536: files of higher ids in an image cannot be unpacked — fix (as root): usermod --add-subuids 231072-296607 alice",
			"ok       subgid: alice: 100000-165535 (65536 ids)"}},
		{"malformed", "alice", subFiles("alice:100000\n", both), [2]string{
			"error    subuid: /etc/subuid: line 1 is not NAME:START:COUNT — fix (as root): edit /etc/subuid so that each line is NAME:START:COUNT",
			"ok       subgid: alice: 100000-165535 (65536 ids)"}},
	} {
		got := subIDChecks(tc.user, 1000, tc.files)
		for i := range got {
			if got[i].String() != tc.want[i] {
				t.Errorf("%s:\n got %s\nwant %s", tc.name, got[i], tc.want[i])
			}
		}
	}
}

func TestSubIDFileMissing(t *testing.T) {
	files := subFiles("", "alice:100000:65536\n")
	files[0].lines, files[0].err = nil, &fs.PathError{Op: "open", Path: "/etc/subuid", Err: fs.ErrNotExist}
	got := subIDChecks("alice", 1000, files)[0].String()
	want := "error    subuid: /etc/subuid does not exist — fix (as root): usermod --add-subuids 165536-231071 alice"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
