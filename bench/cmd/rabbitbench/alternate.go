package main

import (
	"fmt"
	"strings"
	"time"
)

// measure is one value a contender reports for one round.
type measure struct {
	metric string
	unit   string
	higher bool
	value  float64
}

// contender is one peer in one group of measurements.
type contender struct {
	name string
	// run performs one round and returns what it measured.
	run func(round int) ([]measure, error)
	// skipped is set when the contender cannot run here, with the reason.
	skipped string
	fails   int
	// after, when set, cleans up after a round, outside the measurement.
	after func(port int)
}

// alternate runs every contender once per round, rotating the order each
// round so that no contender always follows the same neighbour, and records
// every measure into res under group. A warm-up round (not recorded) probes
// each contender; one that fails it is reported as skipped with its error.
func alternate(res *results, group string, rounds int, cs []*contender, logf func(string, ...any)) {
	res.begin(group)
	for _, c := range cs {
		if c.skipped != "" {
			continue
		}
		if _, err := c.run(-1); err != nil {
			c.skipped = oneLine(err.Error())
			logf("%s: %s: cannot run here: %s", group, c.name, c.skipped)
		}
	}
	var live []*contender
	for _, c := range cs {
		if c.skipped == "" {
			live = append(live, c)
		}
	}
	start := time.Now()
	for round := 0; round < rounds; round++ {
		for i := range live {
			c := live[(i+round)%len(live)]
			ms, err := c.run(round)
			// Orphans of the round (podman's conmon, say) were reparented
			// to us: reap them outside the measurement.
			reapOrphans()
			if err != nil {
				c.fails++
				logf("%s: %s: round %d: %v", group, c.name, round, oneLine(err.Error()))
				continue
			}
			for _, m := range ms {
				s := res.get(group, m.metric, m.unit, c.name, m.higher)
				s.vals = append(s.vals, m.value)
				s.rounds = append(s.rounds, round)
			}
		}
	}
	logf("%s: %d rounds of %d contenders in %s", group, rounds, len(live), time.Since(start).Round(time.Millisecond))
	for _, c := range cs {
		if c.skipped != "" {
			res.skip(group, c.name, c.skipped)
		} else if c.fails > 0 {
			res.note(group, c.name, fmt.Sprintf("%d of %d rounds failed", c.fails, rounds))
		}
	}
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		// Keep the last non-empty line too: tools often print the cause last.
		last := strings.TrimSpace(s[strings.LastIndexByte(s, '\n')+1:])
		s = strings.TrimSpace(s[:i])
		if last != "" && last != s {
			s += " … " + last
		}
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
