package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

// Publish publishes a port of an attached container.
func (c *Client) Publish(ctx context.Context, req PublishRequest) (Published, error) {
	return call[Published](ctx, c, http.MethodPost, "/v1/publish", req)
}

// Unpublish removes the published range of proto ("tcp" or "udp") that
// contains hostPort, and returns it.
func (c *Client) Unpublish(ctx context.Context, hostPort uint16, proto string) (Published, error) {
	return call[Published](ctx, c, http.MethodDelete, "/v1/publish/"+strconv.Itoa(int(hostPort))+"/"+url.PathEscape(proto), nil)
}

// Publishes lists the published ports.
func (c *Client) Publishes(ctx context.Context) ([]Published, error) {
	return call[[]Published](ctx, c, http.MethodGet, "/v1/publish", nil)
}

// Conntrack lists the tracked connections.
func (c *Client) Conntrack(ctx context.Context) ([]ConntrackEntry, error) {
	return call[[]ConntrackEntry](ctx, c, http.MethodGet, "/v1/conntrack", nil)
}

// ConntrackStats returns the counters of connection tracking.
func (c *Client) ConntrackStats(ctx context.Context) (ConntrackStats, error) {
	return call[ConntrackStats](ctx, c, http.MethodGet, "/v1/conntrack/stats", nil)
}

// FlushConntrack removes every tracked connection.
func (c *Client) FlushConntrack(ctx context.Context) (int, error) {
	var r FlushResult
	err := c.do(ctx, http.MethodDelete, "/v1/conntrack", nil, &r)
	return r.Flushed, err
}
