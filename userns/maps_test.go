package userns

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestMapArgs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ranges []Range
		want   []string
		ids    int
	}{
		{"one range", []Range{{Start: 100000, Length: 65536}},
			[]string{"42", "0", "1000", "1", "1", "100000", "65536"}, 65537},
		{"two ranges back to back", []Range{{Start: 100000, Length: 10}, {Start: 300000, Length: 5}},
			[]string{"42", "0", "1000", "1", "1", "100000", "10", "11", "300000", "5"}, 16},
		{"empty range skipped", []Range{{Start: 5, Length: 0}, {Start: 200000, Length: 3}},
			[]string{"42", "0", "1000", "1", "1", "200000", "3"}, 4},
		{"no ranges", nil, []string{"42", "0", "1000", "1"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := MapArgs(42, 1000, tc.ranges); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("MapArgs = %q, want %q", got, tc.want)
			}
			if got := MappedIDs(tc.ranges); got != tc.ids {
				t.Errorf("MappedIDs = %d, want %d", got, tc.ids)
			}
		})
	}
}

// mapLines, which rabbitc info shows, is the map MapArgs hands newuidmap.
func TestMapLinesMatchMapArgs(t *testing.T) {
	for _, ranges := range [][]Range{
		{{Start: 100000, Length: 65536}},
		{{Start: 100000, Length: 1000}, {Start: 0, Length: 0}, {Start: 300000, Length: 65536}},
		nil,
	} {
		var args []string
		for _, l := range mapLines(1000, ranges) {
			args = append(args, strconv.Itoa(int(l.ContainerID)), strconv.Itoa(int(l.HostID)), strconv.Itoa(int(l.Size)))
		}
		want := MapArgs(42, 1000, ranges)[1:]
		if strings.Join(args, " ") != strings.Join(want, " ") {
			t.Errorf("ranges %v: mapLines gives %v, MapArgs %v", ranges, args, want)
		}
	}
}
