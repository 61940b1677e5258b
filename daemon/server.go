package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapswitch/tapswitch/api"
)

// Handler returns the control API (see package api) served by d.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", getter(d.Info))
	mux.HandleFunc("GET /v1/ports", getter(d.Ports))
	mux.HandleFunc("GET /v1/ports/{name}", func(w http.ResponseWriter, r *http.Request) {
		p, err := d.Port(r.PathValue("name"))
		reply(w, http.StatusOK, p, err)
	})
	mux.HandleFunc("POST /v1/ports", decoded(http.StatusCreated, func(r *http.Request, req api.AttachRequest) (api.Port, error) {
		return d.AttachContext(r.Context(), req)
	}))
	mux.HandleFunc("DELETE /v1/ports/{name}", func(w http.ResponseWriter, r *http.Request) {
		replyNoContent(w, d.Detach(r.PathValue("name")))
	})
	mux.HandleFunc("POST /v1/shutdown", func(w http.ResponseWriter, r *http.Request) {
		d.Shutdown()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /v1/ports/{name}/aliases", decoded(http.StatusOK, func(r *http.Request, req api.Aliases) (api.Port, error) {
		return d.SetAliases(r.PathValue("name"), req.Aliases)
	}))
	mux.HandleFunc("GET /v1/fdb", getter(d.FDB))
	d.observeRoutes(mux) // capture and stats: observe.go
	d.natHandlers(mux)
	d.ruleRoutes(mux) // ACL rules and the pipeline: rules.go
	d.vxlanRoutes(mux)
	if testRoutes != nil {
		testRoutes(d, mux)
	}
	return mux
}

// testRoutes, when set, adds routes to the control API for the
// integration tests: only a build with the tapswitch_testhooks tag sets it
// (testhooks.go); a daemon built without that tag has none.
var testRoutes func(d *Daemon, mux *http.ServeMux)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// getter returns a handler that answers what get returns as JSON.
func getter[T any](get func() T) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, get()) }
}

// reply answers v as JSON with status, or err when it is not nil.
func reply(w http.ResponseWriter, status int, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, status, v)
}

// replyNoContent answers 204 No Content, or err when it is not nil.
func replyNoContent(w http.ResponseWriter, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// decoded returns a handler that decodes the request's body into a Req
// (decodeBody: one JSON object, no unknown fields) and answers what do
// returns for it with status, or the error.
func decoded[Req, Resp any](status int, do func(r *http.Request, req Req) (Resp, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := decodeBody(w, r, &req); err != nil {
			writeError(w, err)
			return
		}
		v, err := do(r, req)
		reply(w, status, v, err)
	}
}

func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrConflict):
		status = http.StatusConflict
	case errors.Is(err, ErrForbidden):
		status = http.StatusForbidden
	}
	writeJSON(w, status, api.Error{Message: err.Error()})
}

// ErrRunning is returned by Listen when another daemon already serves the
// socket.
var ErrRunning = errors.New("another tapswitch daemon is running")

// Listener is the control socket, held with an exclusive lock on a file
// beside it so that a second daemon refuses to start.
type Listener struct {
	net.Listener
	path string
	lock *os.File
	once sync.Once
	err  error
}

// Listen creates the control socket at path, mode 0600, in a directory
// created 0700 if missing. A socket left by a daemon that died is replaced;
// one held by a live daemon is not (ErrRunning).
func Listen(path string) (*Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("control socket lock: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w on %s", ErrRunning, path)
		}
		return nil, fmt.Errorf("lock %s.lock: %w", path, err)
	}
	// We hold the lock, so a socket file still there is a dead daemon's.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		lock.Close()
		return nil, fmt.Errorf("remove stale control socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		lock.Close()
		return nil, fmt.Errorf("control socket mode: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	return &Listener{Listener: ln, path: path, lock: lock}, nil
}

// Close closes the socket, removes it and releases the lock.
// It is safe to call more than once.
func (l *Listener) Close() error {
	l.once.Do(func() {
		l.err = l.Listener.Close()
		os.Remove(l.path + ".lock")
		l.lock.Close()
	})
	return l.err
}

// Serve answers the control API on ln until ctx is done, then stops the
// server and closes d (removing every TAP it created).
func (d *Daemon) Serve(ctx context.Context, ln *Listener) error {
	srv := newControlServer(d.Handler(), controlLimits)
	srv.RegisterOnShutdown(d.stopCaptures) // end capture streams cleanly
	errc := make(chan error, 1)
	lim := newLimitListener(ln, controlLimits.conns, &d.ctl)
	srv.ConnState = lim.connState
	go func() { errc <- srv.Serve(lim) }()
	var err error
	select {
	case <-ctx.Done():
	case <-d.stop:
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	ln.Close()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// natHandlers adds the NAT endpoints (api/nat.go) to mux.
func (d *Daemon) natHandlers(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/publish", getter(d.Publishes))
	mux.HandleFunc("POST /v1/publish", decoded(http.StatusCreated, func(_ *http.Request, req api.PublishRequest) (api.Published, error) {
		return d.Publish(req)
	}))
	mux.HandleFunc("DELETE /v1/publish/{port}/{proto}", func(w http.ResponseWriter, r *http.Request) {
		p, err := d.Unpublish(r.PathValue("port"), r.PathValue("proto"))
		reply(w, http.StatusOK, p, err)
	})
	mux.HandleFunc("GET /v1/conntrack", getter(d.Conntrack))
	mux.HandleFunc("GET /v1/conntrack/stats", getter(d.ConntrackStats))
	mux.HandleFunc("DELETE /v1/conntrack", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.FlushConntrack())
	})
}

// maxBody is the largest request body the control API reads.
const maxBody = 64 << 10

// decodeBody decodes the JSON body of r into v strictly: one object, no
// field v does not have (a typo must not pass silently), nothing after it,
// at most maxBody bytes. The error is an ErrInvalid of one sentence.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// Anything but white space after the object is refused, a second
		// object included.
		var extra json.RawMessage
		if err = dec.Decode(&extra); err == io.EOF {
			return nil
		}
		if err == nil || !isSizeError(err) {
			return invalid("request body: data after the JSON object")
		}
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case isSizeError(err):
		return invalid("request body: larger than %d KiB", maxBody>>10)
	case errors.Is(err, io.EOF):
		return invalid("request body: empty, a JSON object is expected")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("request body: JSON cut short")
	case errors.As(err, &syn):
		return invalid("request body: not valid JSON at byte %d (%v)", syn.Offset, syn)
	case errors.As(err, &typ):
		return invalid("request body: field %q: a JSON %s cannot be a %s", typ.Field, typ.Value, typ.Type)
	}
	return invalid("request body: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// isSizeError reports whether err is http.MaxBytesReader's.
func isSizeError(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}
