package energy

import (
	"sync"
	"time"
)

// Energy is what a metered window used.
type Energy struct {
	Joules  float64       `json:"joules"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// Estimated is true when the joules come from CPU time × TDP instead
	// of a hardware counter; say so wherever the figure is shown.
	Estimated bool `json:"estimated"`
	// Source names the counter: "rapl", "rapl+nvml", "cpu-time×tdp".
	Source string `json:"source"`
	// Err is set when the counter could not be read during the window
	// (the joules then cover only what could be read).
	Err string `json:"error,omitempty"`
}

// Meter attributes energy to requests. Between two consecutive Start/Stop
// events the counter's increase is split equally between the windows open
// during that interval, so overlapping requests are not counted twice and
// the sum over windows never exceeds what the counter measured.
// A Meter is safe for concurrent use; its zero value is not usable: use
// NewMeter.
type Meter struct {
	src       Counter
	estimated bool
	source    string
	now       func() time.Time

	mu     sync.Mutex
	last   float64              // guarded by mu: counter at the last event
	open   map[*Window]struct{} // guarded by mu
	err    error                // guarded by mu: last counter error
	inited bool                 // guarded by mu
}

// Window is one metered request; call Stop exactly once (later calls
// return the same Energy).
type Window struct {
	m       *Meter
	start   time.Time
	joules  float64 // guarded by m.mu
	errText string  // guarded by m.mu
	done    bool    // guarded by m.mu
	result  Energy  // guarded by m.mu
}

// NewMeter meters src. estimated and source describe it (see Energy).
func NewMeter(src Counter, estimated bool, source string) *Meter {
	return &Meter{src: src, estimated: estimated, source: source, now: time.Now, open: map[*Window]struct{}{}}
}

// Source describes the meter's counter.
func (m *Meter) Source() (name string, estimated bool) { return m.source, m.estimated }

// advanceLocked reads the counter and shares the increase among open windows.
func (m *Meter) advanceLocked() {
	j, err := m.src.Joules()
	if err != nil {
		m.err = err
		for w := range m.open {
			w.errText = err.Error()
		}
		return
	}
	if !m.inited {
		m.last, m.inited = j, true
		return
	}
	d := j - m.last
	m.last = j
	if d <= 0 || len(m.open) == 0 {
		return
	}
	share := d / float64(len(m.open))
	for w := range m.open {
		w.joules += share
	}
}

// Start opens a window.
func (m *Meter) Start() *Window {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advanceLocked()
	w := &Window{m: m, start: m.now()}
	m.open[w] = struct{}{}
	return w
}

// Stop closes the window and returns its share of the energy.
func (w *Window) Stop() Energy {
	m := w.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if w.done {
		return w.result
	}
	m.advanceLocked()
	delete(m.open, w)
	w.done = true
	w.result = Energy{Joules: w.joules, Elapsed: m.now().Sub(w.start), Estimated: m.estimated, Source: m.source, Err: w.errText}
	return w.result
}

// Sum adds counters (CPU and GPU).
type Sum []Counter

// Joules returns the sum of all counters; the first error wins.
func (s Sum) Joules() (float64, error) {
	var t float64
	for _, c := range s {
		j, err := c.Joules()
		if err != nil {
			return 0, err
		}
		t += j
	}
	return t, nil
}
