//go:build tapswitch_testhooks

package daemon

import (
	"net/http"
	"os"
)

// A daemon built with the tapswitch_testhooks tag (never the one
// installed: make and the packages build without it) has the routes below,
// for the integration test of what the daemon does when something is
// really stuck. Nothing in the daemon itself blocks that way any more.

func init() { testRoutes = stuckRoute }

// stuckRoute adds POST /v1/test/stuck {"path": FIFO}: the handler takes
// the daemon's lock, answers 202 with its header only, and opens the FIFO,
// which blocks in the kernel until a writer comes. That is what an attach
// of a FIFO did before the namespace path was opened with O_PATH (issue
// 16): Close then waits for the lock, and only the shutdown watchdog ends
// the process.
func stuckRoute(d *Daemon, mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/test/stuck", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Path string `json:"path"`
		}
		if err := decodeBody(w, r, &req); err != nil {
			writeError(w, err)
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		w.(http.Flusher).Flush()
		if f, err := os.Open(req.Path); err == nil {
			f.Close()
		}
	})
}
