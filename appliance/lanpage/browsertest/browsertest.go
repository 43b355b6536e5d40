// Package browsertest holds what the LAN page's browser tests share: a
// recorder of every request the browser makes and of every script error or
// error-level log entry (CSP violations), so a test can assert that nothing
// leaves the box and that the page runs clean.
package browsertest

import (
	"context"
	"fmt"
	"sync"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Recorder collects events of one browser context. Safe for concurrent use.
type Recorder struct {
	mu       sync.Mutex
	requests []string // guarded by mu
	problems []string // guarded by mu
}

// Record starts recording the browser context ctx.
func Record(ctx context.Context) (*Recorder, error) {
	r := &Recorder{}
	err := chromedp.Listen(ctx, func(ev any) {
		r.mu.Lock()
		defer r.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			r.requests = append(r.requests, e.Request.URL)
		case *runtime.EventExceptionThrown:
			r.problems = append(r.problems, "exception: "+e.ExceptionDetails.Text+" "+fmt.Sprint(e.ExceptionDetails.Exception))
		case *cdplog.EventEntryAdded:
			// Refused requests (4xx in the steward tests) log network
			// errors; anything else at error level (CSP violations,
			// script errors) is a bug.
			if e.Entry.Level == cdplog.EntryLevelError && e.Entry.Source != cdplog.EntrySourceNetwork {
				r.problems = append(r.problems, string(e.Entry.Source)+": "+e.Entry.Text+" at "+e.Entry.URL)
			}
		}
	})
	return r, err
}

// Snapshot returns copies of the URLs requested and the problems seen so far.
func (r *Recorder) Snapshot() (requests, problems []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...), append([]string(nil), r.problems...)
}
