// Package fdb implements tapswitch's MAC forwarding database: the table that
// maps a (MAC, VLAN) key to the switch port behind which the station was last
// seen, like the Linux bridge's fdb (net/bridge/br_fdb.c).
//
// The datapath calls [Table.Learn] with the source address of every frame and
// [Table.Lookup] with its destination address, from one goroutine per port at
// the same time. Neither takes an exclusive lock in the common case: a lookup
// and the learning of a MAC already known on the same port hold only the read
// side of a sync.RWMutex and update the entry's last-seen time atomically, as
// br_fdb_update does for an existing entry under RCU. The write lock is taken
// only to add a new MAC, to move a MAC to another port, and by the control
// plane (static entries, Delete, FlushPort, Expire). Lookup, and Learn of a
// known MAC, allocate nothing.
//
// The table never reads the clock and starts no goroutines: every call that
// depends on time takes now, nanoseconds on a monotonic clock of the caller's
// choosing, and the owner calls [Table.Expire] periodically (the Linux bridge
// runs br_fdb_cleanup as delayed work for the same purpose).
// Dynamic entries age out after [Config.Ageing], 300 s by default as the Linux
// bridge (BR_DEFAULT_AGEING_TIME, the "ageing_time" bridge option). An entry
// older than that is already a miss for Lookup before Expire removes it.
//
// The table is bounded in total ([Config.MaxEntries]) and per port
// ([Config.MaxPerPort], dynamic entries only). A new MAC on a port at its
// limit is not learned ([LimitPort], as the Linux bridge's max_learned); the
// frame itself is unaffected: the caller still forwards it, and frames
// towards the unlearned MAC are flooded as for any unknown destination. A new
// MAC that finds the whole table full evicts the oldest entry of the port
// holding the most entries, as Open vSwitch does (evict.go), so a port
// flooding random source addresses cannot lock the other ports' stations
// out; only a table full of static entries refuses ([LimitTotal]). Every
// event is counted in [Stats]. This bounds the memory a port can make the
// switch use by MAC flooding.
//
// Multicast (including broadcast) and all-zero source addresses are never
// learned ([Ignored]). The Linux bridge goes further and drops such frames in
// br_handle_frame (!is_valid_ether_addr); whether to drop them is left to the
// caller.
package fdb
