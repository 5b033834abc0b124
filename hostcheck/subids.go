package hostcheck

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// subIDLine is one line of /etc/subuid or /etc/subgid: Count ids from Start
// for Owner, a login name or a uid.
type subIDLine struct {
	Owner        string
	Start, Count int64
}

func (l subIDLine) end() int64 { return l.Start + l.Count } // one past the last id

// String is the range as usermod takes it: FIRST-LAST.
func (l subIDLine) String() string { return fmt.Sprintf("%d-%d", l.Start, l.end()-1) }

func (l subIDLine) overlaps(o subIDLine) bool { return l.Start < o.end() && o.Start < l.end() }

// parseSubIDs reads a subordinate id file. A malformed line is an error
// naming it: newuidmap and rabbitc refuse such a file too.
func parseSubIDs(text string) ([]subIDLine, error) {
	var out []subIDLine
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d is not NAME:START:COUNT", i+1)
		}
		start, err1 := strconv.ParseInt(f[1], 10, 64)
		count, err2 := strconv.ParseInt(f[2], 10, 64)
		if f[0] == "" || err1 != nil || err2 != nil || start < 0 || count < 0 {
			return nil, fmt.Errorf("line %d is not NAME:START:COUNT", i+1)
		}
		out = append(out, subIDLine{f[0], start, count})
	}
	return out, nil
}

// subIDFile is /etc/subuid or /etc/subgid as read, with usermod's options
// for it.
type subIDFile struct {
	name, path string // "subuid", "/etc/subuid"
	add, del   string // usermod's options: "--add-subuids", "--del-subuids"
	lines      []subIDLine
	err        error
}

func readSubIDFile(name string) subIDFile {
	f := subIDFile{name: name, path: "/etc/" + name, add: "--add-" + name + "s", del: "--del-" + name + "s"}
	b, err := os.ReadFile(f.path)
	if err == nil {
		f.lines, err = parseSubIDs(string(b))
	}
	f.err = err
	return f
}

// SubIDs checks the user's ranges in /etc/subuid and /etc/subgid: present,
// 65536 ids at least, and shared with no other user.
func SubIDs(user string, uid int) []Check {
	if uid == 0 {
		return []Check{ok("subuid", "not needed as root (rabbitc maps ids 0-65535 itself)"), ok("subgid", "not needed as root")}
	}
	files := []subIDFile{readSubIDFile("subuid"), readSubIDFile("subgid")}
	return subIDChecks(user, uid, files)
}

// minIDs is what an image needs: files of ids up to 65534 (nobody).
const minIDs = 65536

// subIDChecks judges each file for the user, whose ranges are the lines
// naming them or their uid.
func subIDChecks(user string, uid int, files []subIDFile) []Check {
	who := user
	if who == "" {
		who = strconv.Itoa(uid)
	}
	mine := func(l subIDLine) bool { return l.Owner == user || l.Owner == strconv.Itoa(uid) }
	free := subIDLine{Start: freeStart(files), Count: minIDs}
	addFix := "usermod"
	for _, f := range files {
		if f.err == nil && !hasAny(f.lines, mine) || errors.Is(f.err, fs.ErrNotExist) {
			addFix += " " + f.add + " " + free.String()
		}
	}
	addFix += " " + who
	var out []Check
	for _, f := range files {
		out = append(out, subIDCheck(f, who, mine, free, addFix))
	}
	return out
}

func subIDCheck(f subIDFile, who string, mine func(subIDLine) bool, free subIDLine, addFix string) Check {
	switch {
	case errors.Is(f.err, fs.ErrNotExist):
		return rootFix(Error, f.name, f.path+" does not exist", addFix)
	case f.err != nil:
		return rootFix(Error, f.name, f.path+": "+f.err.Error(), "edit "+f.path+" so that each line is NAME:START:COUNT")
	}
	var own, others []subIDLine
	var total int64
	for _, l := range f.lines {
		if mine(l) {
			own, total = append(own, l), total+l.Count
		} else {
			others = append(others, l)
		}
	}
	if len(own) == 0 {
		return rootFix(Error, f.name, "no range for "+who+" in "+f.path, addFix)
	}
	for _, l := range own {
		for _, o := range others {
			if l.overlaps(o) {
				return rootFix(Error, f.name, fmt.Sprintf("%s's range %s overlaps %s's %s in %s: their containers would share ids", who, l, o.Owner, o, f.path),
					fmt.Sprintf("usermod %s %s %s %s %s", f.del, l, f.add, free, who))
			}
		}
	}
	detail := fmt.Sprintf("%s: %s (%d ids)", who, joinRanges(own), total)
	if total < minIDs {
		return rootFix(Warning, f.name, detail+fmt.Sprintf(", fewer than %d: files of higher ids in an image cannot be unpacked", minIDs),
			fmt.Sprintf("usermod %s %s %s", f.add, free, who))
	}
	return ok(f.name, detail)
}

// freeStart is the first id after every range of both files (100000 at
// least, as useradd starts), so one new range fits both.
func freeStart(files []subIDFile) int64 {
	start := int64(100000)
	for _, f := range files {
		for _, l := range f.lines {
			start = max(start, l.end())
		}
	}
	return start
}

func hasAny(lines []subIDLine, match func(subIDLine) bool) bool {
	for _, l := range lines {
		if match(l) {
			return true
		}
	}
	return false
}

func joinRanges(ls []subIDLine) string {
	s := make([]string, len(ls))
	for i, l := range ls {
		s[i] = l.String()
	}
	return strings.Join(s, ", ")
}
