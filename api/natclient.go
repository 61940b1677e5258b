package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

// Publish publishes a port of an attached container.
func (c *Client) Publish(ctx context.Context, req PublishRequest) (Published, error) {
	var p Published
	err := c.do(ctx, http.MethodPost, "/v1/publish", req, &p)
	return p, err
}

// Unpublish removes the published range of proto ("tcp" or "udp") that
// contains hostPort, and returns it.
func (c *Client) Unpublish(ctx context.Context, hostPort uint16, proto string) (Published, error) {
	var p Published
	err := c.do(ctx, http.MethodDelete, "/v1/publish/"+strconv.Itoa(int(hostPort))+"/"+url.PathEscape(proto), nil, &p)
	return p, err
}

// Publishes lists the published ports.
func (c *Client) Publishes(ctx context.Context) ([]Published, error) {
	var p []Published
	err := c.do(ctx, http.MethodGet, "/v1/publish", nil, &p)
	return p, err
}

// Conntrack lists the tracked connections.
func (c *Client) Conntrack(ctx context.Context) ([]ConntrackEntry, error) {
	var e []ConntrackEntry
	err := c.do(ctx, http.MethodGet, "/v1/conntrack", nil, &e)
	return e, err
}

// ConntrackStats returns the counters of connection tracking.
func (c *Client) ConntrackStats(ctx context.Context) (ConntrackStats, error) {
	var s ConntrackStats
	err := c.do(ctx, http.MethodGet, "/v1/conntrack/stats", nil, &s)
	return s, err
}

// FlushConntrack removes every tracked connection.
func (c *Client) FlushConntrack(ctx context.Context) (int, error) {
	var r FlushResult
	err := c.do(ctx, http.MethodDelete, "/v1/conntrack", nil, &r)
	return r.Flushed, err
}
