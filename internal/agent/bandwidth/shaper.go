// Package bandwidth is the mechanism half of PlanetLab's bwmon on a node: an
// HTB tree on the node's uplink with one class per slice, and an nftables
// table in the host namespace that sends each sliver's packets to its
// slice's class. The policy (how many bytes a slice may send today, and so
// each class's ceil) is package budget's (internal/agent/bandwidth/budget); Loop joins the two.
//
// # The tree
//
// The uplink's root qdisc is HTB with handle Major:0 (PlanetKube owns the
// uplink's root qdisc while shaping is on). Class Major:1 is the node cap;
// under it Major:2 takes what no slice owns (the node's own traffic, other
// pods) and each slice has a class with quantum 1,600 bytes × its share (as
// bwmon), a guaranteed rate of the minimum rate and a ceil that the budget
// decides. With exempt destinations (PlanetLab's Internet2 class) a second
// root class Major:3, with its own cap, holds each slice's exempt class.
//
// # Classification
//
// A mark set inside a pod is lost at its veth, and the masquerade rewrites
// the source address before the uplink's qdisc sees the packet. So packets
// are classified in the host namespace, in a postrouting chain of priority
// mangle (before the masquerade): a map from the sliver's address to the
// class sets the packet's priority (skb->priority), which HTB takes as the
// class directly when its major is the qdisc's. No tc filter is needed,
// and firewall marks (which kube-proxy and CNIs use) are left alone. Exempt
// destinations get one rule per prefix, after the general rule, that looks
// the source up in the exempt map instead.
package bandwidth

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"sort"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	agentns "github.com/planetkube/planetkube/internal/agent/netns"
	"golang.org/x/sys/unix"
)

// Defaults and bounds of the tree.
const (
	// DefaultMajor is the HTB qdisc's handle major ("PK" would be 0x504b;
	// a number that no tool picks by itself).
	DefaultMajor = 0x504b
	// QuantumPerShare is bwmon's HTB quantum per share, in bytes.
	QuantumPerShare = 1600
	// MaxShare bounds a slice's share (the Slice API allows 1 to 100).
	MaxShare = 100
	// MaxSlices bounds the slices shaped on one node (two class minors
	// each, from 0x10).
	MaxSlices = 4096
	// MaxExempt bounds the exempt destination prefixes (one rule each).
	MaxExempt = 64
	// TableName is the nftables table (family inet) the shaper owns.
	TableName = "planetkube_bandwidth"

	minorCap, minorDefault, minorExempt = 1, 2, 3
	firstSliceMinor                     = 0x10
)

// Config says what to shape.
type Config struct {
	// Link is the uplink's name.
	Link string
	// NetNS is the network namespace of the link, as a path (such as
	// /run/netns/x); empty means the caller's.
	NetNS string
	// Major is the qdisc's handle major (default DefaultMajor).
	Major uint16
	// NodeCap is the node's cap in bit/s (class Major:1).
	NodeCap uint64
	// MinRate is each slice class's guaranteed rate in bit/s: what it
	// gets even when every other slice is busy (default 8,000).
	MinRate uint64
	// Exempt are destination prefixes counted apart (at most MaxExempt).
	Exempt []netip.Prefix
	// ExemptCap is the cap of exempt traffic in bit/s (default NodeCap).
	ExemptCap uint64
}

// Class is a slice's traffic class: what Apply makes the tree hold.
type Class struct {
	// Slice is the slice's full name (the class's key).
	Slice string
	// Share weights the slice against the others (1 to MaxShare).
	Share int
	// Addrs are its slivers' addresses on this node.
	Addrs []netip.Addr
	// Ceil and ExemptCeil are the ceils in bit/s; 0 means the cap.
	Ceil, ExemptCeil uint64
}

// Counters are the bytes a slice's classes have sent since they were made.
type Counters struct {
	Bytes, ExemptBytes uint64
}

// Shaper owns the uplink's root qdisc and the nftables table. It is safe
// for concurrent use.
type Shaper struct {
	mu  sync.Mutex
	cfg Config
	nl  *netlink.Handle
	nft *nftables.Conn
	// closeNS closes the namespace file the connections were opened with.
	closeNS func()
	link    netlink.Link
	maps    [4]*nftables.Set // class4, class6, exempt4, exempt6
	slots   map[string]int   // slice → slot
	elems   map[netip.Addr]uint16
}

// New opens the namespace's netlink sockets and builds the tree and the
// table afresh (removing any left by an earlier agent: their counters
// start again from zero). Close releases the sockets; Remove undoes it all.
func New(cfg Config) (*Shaper, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s := &Shaper{cfg: cfg}
	if err := s.open(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.Reset(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (c *Config) defaults() error {
	if c.Major == 0 {
		c.Major = DefaultMajor
	}
	if c.MinRate == 0 {
		c.MinRate = 8000
	}
	if c.ExemptCap == 0 {
		c.ExemptCap = c.NodeCap
	}
	var errs []error
	if c.Link == "" {
		errs = append(errs, errors.New("no uplink named"))
	}
	if c.NodeCap == 0 {
		errs = append(errs, errors.New("node cap is zero"))
	}
	if c.MinRate > c.NodeCap {
		errs = append(errs, fmt.Errorf("minimum rate %d bit/s is above the node cap %d bit/s", c.MinRate, c.NodeCap))
	}
	if len(c.Exempt) > MaxExempt {
		errs = append(errs, fmt.Errorf("%d exempt prefixes, at most %d", len(c.Exempt), MaxExempt))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bwshape: %w", err)
	}
	return nil
}

// open makes the netlink handle and nftables connection in the namespace.
func (s *Shaper) open() error {
	var err error
	if s.nl, s.nft, s.closeNS, err = openConns(s.cfg.NetNS); err != nil {
		return err
	}
	if s.link, err = s.nl.LinkByName(s.cfg.Link); err != nil {
		return fmt.Errorf("finding the uplink %q: %w", s.cfg.Link, err)
	}
	return nil
}

// openConns opens a netlink handle and an nftables connection in the
// namespace at path ("" for the caller's), and a function that closes the
// namespace file once the connections are done with (the nftables
// connection dials with it at every Flush).
func openConns(path string) (*netlink.Handle, *nftables.Conn, func(), error) {
	fd, closeNS, err := agentns.Open(path)
	if err != nil {
		return nil, nil, nil, err
	}
	var h *netlink.Handle
	var opts []nftables.ConnOption
	if path == "" {
		h, err = netlink.NewHandle()
	} else {
		h, err = netlink.NewHandleAt(netns.NsHandle(fd))
		opts = append(opts, nftables.WithNetNSFd(fd))
	}
	if err != nil {
		closeNS()
		return nil, nil, nil, fmt.Errorf("opening netlink in %q: %w", path, err)
	}
	nft, err := nftables.New(opts...)
	if err != nil {
		h.Close()
		closeNS()
		return nil, nil, nil, fmt.Errorf("opening nftables in %q: %w", path, err)
	}
	return h, nft, closeNS, nil
}

// Close releases the sockets; the tree and the table stay.
func (s *Shaper) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nl != nil {
		s.nl.Close()
	}
	if s.closeNS != nil {
		s.closeNS()
		s.closeNS = nil
	}
}

func (s *Shaper) handle(minor uint16) uint32 { return netlink.MakeHandle(s.cfg.Major, minor) }

// delQdisc deletes the uplink's root qdisc if it is the shaper's.
func (s *Shaper) delQdisc() error {
	_, err := delRootQdisc(s.nl, s.link, s.cfg.Major)
	return err
}

// delRootQdisc deletes link's root qdisc if its handle's major is major,
// and says whether it did.
func delRootQdisc(h *netlink.Handle, link netlink.Link, major uint16) (bool, error) {
	name := link.Attrs().Name
	qs, err := h.QdiscList(link)
	if err != nil {
		return false, fmt.Errorf("listing qdiscs of %s: %w", name, err)
	}
	for _, q := range qs {
		if a := q.Attrs(); a.Parent == netlink.HANDLE_ROOT && a.Handle == netlink.MakeHandle(major, 0) {
			if err := h.QdiscDel(q); err != nil {
				return false, fmt.Errorf("deleting the qdisc of %s: %w", name, err)
			}
			return true, nil
		}
	}
	return false, nil
}

// RemoveLeftovers undoes the shaping an earlier agent left, once shaping is
// turned off: the nftables table and, on the uplink (link, or the link of
// the default route when empty), a root qdisc with DefaultMajor. It says
// whether it found anything to remove.
func RemoveLeftovers(netnsPath, link string) (bool, error) {
	h, nft, closeNS, err := openConns(netnsPath)
	if err != nil {
		return false, err
	}
	defer closeNS()
	defer h.Close()
	nft.DelTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyINet})
	found := true
	if err := nft.Flush(); errors.Is(err, unix.ENOENT) {
		found = false
	} else if err != nil {
		return false, fmt.Errorf("deleting nftables table %s: %w", TableName, err)
	}
	if link == "" {
		if link, err = DefaultUplink(netnsPath); err != nil {
			return found, nil // no default route: no uplink was shaped by default
		}
	}
	l, err := h.LinkByName(link)
	if err != nil {
		return found, fmt.Errorf("finding the uplink %q: %w", link, err)
	}
	removed, err := delRootQdisc(h, l, DefaultMajor)
	return found || removed, err
}

// Healthy says whether the uplink still has the shaper's root qdisc
// (someone may have replaced it, or the link was recreated).
func (s *Shaper) Healthy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	link, err := s.nl.LinkByName(s.cfg.Link)
	if err != nil || link.Attrs().Index != s.link.Attrs().Index {
		return false
	}
	qs, err := s.nl.QdiscList(s.link)
	if err != nil {
		return false
	}
	for _, q := range qs {
		if a := q.Attrs(); a.Parent == netlink.HANDLE_ROOT {
			return a.Handle == s.handle(0) && q.Type() == "htb"
		}
	}
	return false
}

// Reset builds the tree and the table afresh: every slice class is gone
// (Apply makes them again, counting from zero).
func (s *Shaper) Reset() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if link, err := s.nl.LinkByName(s.cfg.Link); err != nil {
		return fmt.Errorf("finding the uplink %q: %w", s.cfg.Link, err)
	} else {
		s.link = link
	}
	s.slots, s.elems = map[string]int{}, map[netip.Addr]uint16{}
	if err := s.delQdisc(); err != nil {
		return err
	}
	idx := s.link.Attrs().Index
	q := netlink.NewHtb(netlink.QdiscAttrs{LinkIndex: idx, Handle: s.handle(0), Parent: netlink.HANDLE_ROOT})
	q.Defcls = minorDefault
	if err := s.nl.QdiscReplace(q); err != nil {
		return fmt.Errorf("adding the HTB qdisc to %s: %w", s.cfg.Link, err)
	}
	roots := []*netlink.HtbClass{
		s.class(0, minorCap, s.cfg.NodeCap, s.cfg.NodeCap, 0),
		s.class(minorCap, minorDefault, s.cfg.MinRate, s.cfg.NodeCap, QuantumPerShare),
	}
	if len(s.cfg.Exempt) > 0 {
		roots = append(roots, s.class(0, minorExempt, s.cfg.ExemptCap, s.cfg.ExemptCap, 0))
	}
	for _, c := range roots {
		if err := s.nl.ClassReplace(c); err != nil {
			return fmt.Errorf("adding class %s on %s: %w", netlink.HandleStr(c.Handle), s.cfg.Link, err)
		}
	}
	return s.buildTable()
}

// class is an HTB class of the tree: rate and ceil in bit/s.
func (s *Shaper) class(parentMinor, minor uint16, rate, ceil uint64, quantum uint32) *netlink.HtbClass {
	parent := s.handle(parentMinor)
	return netlink.NewHtbClass(netlink.ClassAttrs{
		LinkIndex: s.link.Attrs().Index, Parent: parent, Handle: s.handle(minor),
	}, netlink.HtbClassAttrs{Rate: rate, Ceil: max(rate, ceil), Quantum: quantum})
}

// buildTable replaces the nftables table: the four maps and the rules.
func (s *Shaper) buildTable() error {
	c := s.nft
	c.DelTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyINet})
	_ = c.Flush() // ENOENT when there was none
	t := c.AddTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyINet})
	for i, spec := range []struct {
		name string
		key  nftables.SetDatatype
	}{{"class4", nftables.TypeIPAddr}, {"class6", nftables.TypeIP6Addr}, {"exempt4", nftables.TypeIPAddr}, {"exempt6", nftables.TypeIP6Addr}} {
		set := &nftables.Set{Table: t, Name: spec.name, IsMap: true, KeyType: spec.key, DataType: nftables.TypeClassID}
		if err := c.AddSet(set, nil); err != nil {
			return fmt.Errorf("adding map %s: %w", spec.name, err)
		}
		s.maps[i] = set
	}
	ch := c.AddChain(&nftables.Chain{
		Name: "postrouting", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityMangle,
	})
	oif := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(s.cfg.Link)},
	}
	rule := func(v6 bool, set *nftables.Set, dst *netip.Prefix) {
		family, off, size := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
		if v6 {
			family, off, size = unix.NFPROTO_IPV6, 8, 16
		}
		exprs := append(slices.Clone(oif),
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{family}},
		)
		if dst != nil { // The destination follows the source in both headers.
			exprs = append(exprs, prefixMatch(*dst, off+size)...)
		}
		exprs = append(exprs,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
			&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: set.Name, SetID: set.ID},
			&expr.Meta{Key: expr.MetaKeyPRIORITY, SourceRegister: true, Register: 1},
		)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
	}
	rule(false, s.maps[0], nil)
	rule(true, s.maps[1], nil)
	for _, p := range s.cfg.Exempt {
		p := p.Masked()
		if p.Addr().Is4() {
			rule(false, s.maps[2], &p)
		} else {
			rule(true, s.maps[3], &p)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("adding nftables table %s: %w", TableName, err)
	}
	return nil
}

// prefixMatch matches the destination address, at offset dst of the
// network header, against a prefix.
func prefixMatch(p netip.Prefix, dst uint32) []expr.Any {
	addr := p.Addr().AsSlice()
	size := uint32(len(addr))
	mask := make([]byte, size)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: dst, Len: size},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: mask, Xor: make([]byte, size)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr},
	}
}

// ifname is an interface name as nftables compares it.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// slot returns the slice's slot, giving it the lowest free one.
func (s *Shaper) slot(slice string) (int, bool) {
	if i, ok := s.slots[slice]; ok {
		return i, true
	}
	used := make([]bool, len(s.slots)+1)
	for _, i := range s.slots {
		if i < len(used) {
			used[i] = true
		}
	}
	i := slices.Index(used, false)
	if i >= MaxSlices {
		return 0, false
	}
	s.slots[slice] = i
	return i, true
}

func sliceMinor(slot int) uint16  { return uint16(firstSliceMinor + 2*slot) }
func exemptMinor(slot int) uint16 { return uint16(firstSliceMinor + 2*slot + 1) }

// Counters reads the byte counters of the slices' classes.
func (s *Shaper) Counters() (map[string]Counters, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	classes, err := s.nl.ClassList(s.link, netlink.HANDLE_NONE)
	if err != nil {
		return nil, fmt.Errorf("listing classes of %s: %w", s.cfg.Link, err)
	}
	bytes := map[uint32]uint64{}
	for _, c := range classes {
		if st := c.Attrs().Statistics; st != nil && st.Basic != nil {
			bytes[c.Attrs().Handle] = st.Basic.Bytes
		}
	}
	out := make(map[string]Counters, len(s.slots))
	for slice, slot := range s.slots {
		out[slice] = Counters{Bytes: bytes[s.handle(sliceMinor(slot))], ExemptBytes: bytes[s.handle(exemptMinor(slot))]}
	}
	return out, nil
}

// Apply makes the tree and the maps hold exactly these classes: it adds the
// missing, changes quantum and ceils that differ, and removes the classes
// (and map entries) of slices not listed. It returns the slices removed. An
// address listed by two slices goes to the first in name order.
func (s *Shaper) Apply(classes []Class) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	classes = slices.Clone(classes)
	sort.Slice(classes, func(i, j int) bool { return classes[i].Slice < classes[j].Slice })
	current, err := s.htbClasses()
	if err != nil {
		return nil, err
	}
	var errs []error
	want := map[string]bool{}
	elems := map[netip.Addr]uint16{}
	owners := map[netip.Addr]string{}
	total := 0
	for i, c := range classes {
		if i == 0 || c.Slice != classes[i-1].Slice {
			total += share(c.Share)
		}
	}
	for _, c := range classes {
		if want[c.Slice] {
			continue
		}
		slot, ok := s.slot(c.Slice)
		if !ok {
			errs = append(errs, fmt.Errorf("slice %s: more than %d slices on the node", c.Slice, MaxSlices))
			continue
		}
		want[c.Slice] = true
		quantum := uint32(QuantumPerShare * share(c.Share))
		ceil := capped(c.Ceil, s.cfg.NodeCap)
		rate := s.guaranteed(s.cfg.NodeCap, c.Share, total, ceil)
		if err := s.ensure(current, s.class(minorCap, sliceMinor(slot), rate, ceil, quantum)); err != nil {
			errs = append(errs, fmt.Errorf("slice %s: %w", c.Slice, err))
		}
		if len(s.cfg.Exempt) > 0 {
			ceil := capped(c.ExemptCeil, s.cfg.ExemptCap)
			rate := s.guaranteed(s.cfg.ExemptCap, c.Share, total, ceil)
			if err := s.ensure(current, s.class(minorExempt, exemptMinor(slot), rate, ceil, quantum)); err != nil {
				errs = append(errs, fmt.Errorf("slice %s (exempt): %w", c.Slice, err))
			}
		}
		for _, a := range c.Addrs {
			if _, taken := owners[a.Unmap()]; !taken {
				elems[a.Unmap()], owners[a.Unmap()] = uint16(slot), c.Slice
			}
		}
	}
	if err := s.syncMaps(elems); err != nil {
		errs = append(errs, err)
	}
	var removed []string
	for slice, slot := range s.slots {
		if want[slice] {
			continue
		}
		for _, minor := range []uint16{sliceMinor(slot), exemptMinor(slot)} {
			if c, ok := current[s.handle(minor)]; ok {
				if err := s.nl.ClassDel(c); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("deleting the class of slice %s: %w", slice, err))
				}
			}
		}
		delete(s.slots, slice)
		removed = append(removed, slice)
	}
	sort.Strings(removed)
	return removed, errors.Join(errs...)
}

// share is a class's share within bounds.
func share(n int) int { return min(max(n, 1), MaxShare) }

// guaranteed is a slice class's rate: its share of the cap less the minimum
// rate kept for the node's own traffic, at least the minimum rate and at
// most its ceil. HTB serves every class up to its rate before any borrows,
// so busy slices split the cap by share however short their queues are
// (TCP small queues keep a forwarded flow's backlog at a packet or two,
// too short for the quantum alone to weigh the classes).
func (s *Shaper) guaranteed(cap uint64, n, total int, ceil uint64) uint64 {
	rate := s.cfg.MinRate
	if total > 0 && cap > s.cfg.MinRate {
		hi, lo := bits.Mul64(cap-s.cfg.MinRate, uint64(share(n)))
		q, _ := bits.Div64(hi, lo, uint64(total))
		rate = max(rate, q)
	}
	return min(rate, ceil)
}

func capped(ceil, cap uint64) uint64 {
	if ceil == 0 || ceil > cap {
		return cap
	}
	return ceil
}

// htbClasses lists the uplink's HTB classes by handle.
func (s *Shaper) htbClasses() (map[uint32]*netlink.HtbClass, error) {
	list, err := s.nl.ClassList(s.link, netlink.HANDLE_NONE)
	if err != nil {
		return nil, fmt.Errorf("listing classes of %s: %w", s.cfg.Link, err)
	}
	out := map[uint32]*netlink.HtbClass{}
	for _, c := range list {
		if h, ok := c.(*netlink.HtbClass); ok {
			out[h.Handle] = h
		}
	}
	return out, nil
}

// ensure adds the class, or changes it when its quantum or ceil differ.
func (s *Shaper) ensure(current map[uint32]*netlink.HtbClass, want *netlink.HtbClass) error {
	have, ok := current[want.Handle]
	switch {
	case !ok:
		return s.nl.ClassAdd(want)
	case have.Ceil != want.Ceil || have.Quantum != want.Quantum || have.Rate != want.Rate:
		return s.nl.ClassChange(want)
	}
	return nil
}

// syncMaps brings the four maps to elems (address → slot) in one batch.
func (s *Shaper) syncMaps(elems map[netip.Addr]uint16) error {
	var add, del [4][]nftables.SetElement
	idx := func(a netip.Addr, exempt bool) int {
		i := 0
		if a.Is6() {
			i = 1
		}
		if exempt {
			i += 2
		}
		return i
	}
	exempt := len(s.cfg.Exempt) > 0
	for a, slot := range s.elems {
		if now, ok := elems[a]; !ok || now != slot {
			del[idx(a, false)] = append(del[idx(a, false)], nftables.SetElement{Key: a.AsSlice()})
			if exempt {
				del[idx(a, true)] = append(del[idx(a, true)], nftables.SetElement{Key: a.AsSlice()})
			}
		}
	}
	for a, slot := range elems {
		if was, ok := s.elems[a]; ok && was == slot {
			continue
		}
		add[idx(a, false)] = append(add[idx(a, false)], nftables.SetElement{Key: a.AsSlice(), Val: binaryutil.NativeEndian.PutUint32(s.handle(sliceMinor(int(slot))))})
		if exempt {
			add[idx(a, true)] = append(add[idx(a, true)], nftables.SetElement{Key: a.AsSlice(), Val: binaryutil.NativeEndian.PutUint32(s.handle(exemptMinor(int(slot))))})
		}
	}
	changed := false
	for i := range s.maps {
		if len(del[i]) > 0 {
			changed = true
			if err := s.nft.SetDeleteElements(s.maps[i], del[i]); err != nil {
				return err
			}
		}
		if len(add[i]) > 0 {
			changed = true
			if err := s.nft.SetAddElements(s.maps[i], add[i]); err != nil {
				return err
			}
		}
	}
	if !changed {
		return nil
	}
	if err := s.nft.Flush(); err != nil {
		return fmt.Errorf("updating the sliver address maps: %w", err)
	}
	s.elems = elems
	return nil
}

// DefaultUplink returns the name of the link that holds the IPv4 (else
// IPv6) default route in the namespace at path ("" for the caller's).
func DefaultUplink(path string) (string, error) {
	h, _, closeNS, err := openConns(path)
	if err != nil {
		return "", err
	}
	defer closeNS()
	defer h.Close()
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := h.RouteList(nil, family)
		if err != nil {
			return "", fmt.Errorf("listing routes: %w", err)
		}
		for _, r := range routes {
			if (r.Dst == nil || r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask)) && r.LinkIndex > 0 {
				link, err := h.LinkByIndex(r.LinkIndex)
				if err != nil {
					return "", fmt.Errorf("finding the default route's link: %w", err)
				}
				return link.Attrs().Name, nil
			}
		}
	}
	return "", errors.New("no default route: name the uplink")
}

func isZeroMask(m []byte) bool {
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return true
}
