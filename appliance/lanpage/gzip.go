package lanpage

import (
	"compress/gzip"
	"net/http"
	"strings"
	"sync"
)

// Compressing HTML, CSS, JS and JSON cuts the page weight several-fold on a
// slow Wi-Fi link; fonts (woff2) are already compressed and streams
// (server-sent events, chat) must not be buffered, so both pass through.

var gzipPool = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed); return w }}

type gzipWriter struct {
	http.ResponseWriter
	gz      *gzip.Writer
	decided bool
	on      bool
}

func (g *gzipWriter) WriteHeader(status int) {
	if !g.decided {
		g.decided = true
		h := g.Header()
		ct := h.Get("Content-Type")
		g.on = status == http.StatusOK && h.Get("Content-Encoding") == "" &&
			(strings.HasPrefix(ct, "text/html") || strings.HasPrefix(ct, "text/css") || strings.HasPrefix(ct, "application/json") ||
				strings.HasPrefix(ct, "text/javascript") || strings.HasPrefix(ct, "image/svg+xml") || strings.HasPrefix(ct, "text/plain"))
		if g.on {
			h.Del("Content-Length")
			h.Set("Content-Encoding", "gzip")
			g.gz = gzipPool.Get().(*gzip.Writer)
			g.gz.Reset(g.ResponseWriter)
		}
	}
	g.ResponseWriter.WriteHeader(status)
}

func (g *gzipWriter) Write(b []byte) (int, error) {
	if !g.decided {
		if g.Header().Get("Content-Type") == "" {
			g.Header().Set("Content-Type", http.DetectContentType(b))
		}
		g.WriteHeader(http.StatusOK)
	}
	if g.on {
		return g.gz.Write(b)
	}
	return g.ResponseWriter.Write(b)
}

func (g *gzipWriter) close() {
	if g.on {
		g.gz.Close()
		gzipPool.Put(g.gz)
	}
}

// withGzip compresses text responses for clients that accept gzip.
func withGzip(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" || r.URL.Path == "/inference/chat" || !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Accept-Encoding")
		g := &gzipWriter{ResponseWriter: w}
		defer g.close()
		h.ServeHTTP(g, r)
	})
}
