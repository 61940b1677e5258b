package api

// The control API of NAT: published ports and connection tracking.
//
//	GET    /v1/publish                    []Published
//	POST   /v1/publish                    PublishRequest -> Published (201)
//	DELETE /v1/publish/{hostport}/{proto} Published (the removed one)
//	GET    /v1/conntrack                  []ConntrackEntry
//	GET    /v1/conntrack/stats            ConntrackStats
//	DELETE /v1/conntrack                  FlushResult

// PublishRequest publishes a port of an attached container at runtime.
type PublishRequest struct {
	Spec string `json:"spec"` // Docker's -p syntax: [HOSTIP:]HOSTPORT[-END]:CONTAINERPORT[-END][/tcp|/udp]
	To   string `json:"to"`   // the container's port name
}

// Published is a published port range.
type Published struct {
	Spec        string `json:"spec"` // normalised, protocol included, e.g. "8080:80/tcp"
	Proto       string `json:"proto"`
	HostIP      string `json:"host_ip,omitempty"`
	HostPort    uint16 `json:"host_port"`
	HostPortEnd uint16 `json:"host_port_end"`
	Target      string `json:"target"`            // the container's address
	Target6     string `json:"target6,omitempty"` // its IPv6 address, for IPv6 clients (NAT66)
	TargetPort  uint16 `json:"target_port"`
	Port        string `json:"port"` // the container's port name
}

// Tuple is one direction of a connection, as conntrack prints it.
type Tuple struct {
	Src   string `json:"src"`
	Dst   string `json:"dst"`
	Sport uint16 `json:"sport"` // for ICMP echo: the identifier of a request
	Dport uint16 `json:"dport"` // for ICMP echo: the identifier of a reply
}

// ConntrackEntry is a tracked connection, like a line of `conntrack -L`.
type ConntrackEntry struct {
	Family       string  `json:"family"` // "ipv4" or "ipv6", as conntrack -f names them
	Proto        string  `json:"proto"`  // "tcp", "udp", "icmp" or "icmpv6"
	State        string  `json:"state"`  // TCP state, or UNREPLIED/REPLIED
	Timeout      float64 `json:"timeout_seconds"`
	Orig         Tuple   `json:"orig"`
	Reply        Tuple   `json:"reply"`
	OrigPackets  uint64  `json:"orig_packets"`
	OrigBytes    uint64  `json:"orig_bytes"`
	ReplyPackets uint64  `json:"reply_packets"`
	ReplyBytes   uint64  `json:"reply_bytes"`
}

// ConntrackStats are the counters of connection tracking.
type ConntrackStats struct {
	Entries       uint64            `json:"entries"`
	TCP           uint64            `json:"tcp"`
	UDP           uint64            `json:"udp"`
	ICMP          uint64            `json:"icmp"` // ICMP and ICMPv6
	IPv6          uint64            `json:"ipv6"` // of Entries, the IPv6 ones
	Max           int               `json:"max"`
	Mappings      uint64            `json:"mappings"`
	Created       uint64            `json:"created"`
	Expired       uint64            `json:"expired"`
	Evicted       uint64            `json:"evicted"`
	Refused       uint64            `json:"refused"` // new connections refused: the table was full
	Flushed       uint64            `json:"flushed"`
	TranslatedOut uint64            `json:"translated_out"`
	TranslatedIn  uint64            `json:"translated_in"`
	ICMPErrors    uint64            `json:"icmp_errors"`
	Drops         map[string]uint64 `json:"drops"` // by reason, only the non-zero ones
}

// FlushResult says how many connections a flush removed.
type FlushResult struct {
	Flushed int `json:"flushed"`
}
