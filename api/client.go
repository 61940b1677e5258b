package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// StatusError is returned by Client methods when the daemon answers with an
// error status; Message is the daemon's own words.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string { return e.Message }

// Client talks to a tapswitch daemon over its control socket. It is safe for
// concurrent use.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the daemon listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// Socket returns the path the client connects to.
func (c *Client) Socket() string { return c.socket }

// Info returns the daemon's description of itself.
func (c *Client) Info(ctx context.Context) (Info, error) {
	return call[Info](ctx, c, http.MethodGet, "/v1/info", nil)
}

// Ports lists the switch's ports.
func (c *Client) Ports(ctx context.Context) ([]Port, error) {
	return call[[]Port](ctx, c, http.MethodGet, "/v1/ports", nil)
}

// Attach creates and attaches a port.
func (c *Client) Attach(ctx context.Context, req AttachRequest) (Port, error) {
	return call[Port](ctx, c, http.MethodPost, "/v1/ports", req)
}

// Detach removes the port called name.
func (c *Client) Detach(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/ports/"+url.PathEscape(name), nil, nil)
}

// Shutdown stops the daemon and removes every port it has, persistent
// (--live-restore) ones included: what SIGTERM does without
// --live-restore. It returns once the daemon has accepted; the daemon exits
// soon after.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/shutdown", nil, nil)
}

// FDB lists the MAC table.
func (c *Client) FDB(ctx context.Context) ([]FDBEntry, error) {
	return call[[]FDBEntry](ctx, c, http.MethodGet, "/v1/fdb", nil)
}

// call makes one request of the daemon and decodes its answer, a T.
func call[T any](ctx context.Context, c *Client, method, path string, in any) (T, error) {
	var out T
	err := c.do(ctx, method, path, in, &out)
	return out, err
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	// The host part is ignored: the transport always dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://tapswitch"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach the tapswitch daemon at %s (is `tapswitch run` running?): %w", c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("daemon answered %s", resp.Status)
		}
		return &StatusError{Status: resp.StatusCode, Message: e.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s: %w", method, path, err)
	}
	return nil
}
