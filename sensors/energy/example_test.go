package energy_test

import (
	"fmt"

	"github.com/univrs/hypha/sensors/energy"
)

// counter stands in for RAPL: a cumulative joule counter.
type counter struct{ j float64 }

func (c *counter) Joules() (float64, error) { return c.j, nil }

// Two requests overlap; each pays its share of what the counter measured
// while it was open.
func ExampleMeter() {
	c := &counter{}
	m := energy.NewMeter(c, false, "rapl")
	a := m.Start()
	c.j += 30 // a alone: 30 J
	b := m.Start()
	c.j += 20 // a and b: 10 J each
	ea := a.Stop()
	c.j += 5 // b alone
	eb := b.Stop()
	fmt.Printf("a %.0f J, b %.0f J, source %s, estimated %v\n", ea.Joules, eb.Joules, ea.Source, ea.Estimated)
	// Output: a 40 J, b 15 J, source rapl, estimated false
}
