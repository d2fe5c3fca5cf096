package capture

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/planetkube/planetkube/internal/flow"
)

// Event types read from the event socket.
const (
	evNew = iota + 1
	evDestroy
	evDecodeError
	evError
	// evOverflow is an ENOBUFS of a reliable socket: the kernel could not
	// queue some events, but it keeps each undelivered DESTROY and sends it
	// again later, so the socket stays usable and nothing needs re-syncing.
	evOverflow
)

// event is one message of the event socket, decoded by the reader goroutine:
// a NEW or DESTROY with its key and record, a message that could not be
// decoded, or the socket's error (the last message of a listener).
type event struct {
	typ int
	at  time.Time
	key key
	rec flow.Record
	err error
}

// listener is an event socket subscribed to NEW and DESTROY, read by its own
// goroutine into events.
type listener struct {
	conn   *netlink.Conn
	events chan event
	done   chan struct{}
	wg     sync.WaitGroup
	rcvbuf int
	forced bool
	// reliable is set when the socket has NETLINK_BROADCAST_ERROR.
	reliable bool
	closeMu  sync.Once
}

// listen dials an event socket in the namespace netnsFD (0: the current
// one), sets its receive buffer to readBuffer bytes (with SO_RCVBUFFORCE,
// falling back to SO_RCVBUF, unless plain), makes its DESTROY events
// reliable unless unreliable, joins the conntrack NEW and DESTROY groups and
// starts its reader.
//
// Reliable events are NETLINK_BROADCAST_ERROR, as conntrackd's: when the
// socket's buffer is full, the kernel's multicast of a DESTROY fails instead
// of dropping it silently, and conntrack then keeps the entry (out of the
// table, so out of dumps, but still counted in nf_conntrack_count) on its
// event cache's dying list, from which a worker sends the DESTROY again
// until it is delivered (nf_ct_delete and ecache_work in
// net/netfilter/nf_conntrack_{core,ecache}.c). NEW events are not kept:
// one that is dropped is only missing from the table until the DESTROY, or
// a dump, brings the flow. The socket still gets its ENOBUFS error (no
// NETLINK_NO_ENOBUFS), which the reader reports as evOverflow and reads on.
func listen(netnsFD, readBuffer int, plain, unreliable bool) (*listener, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netnsFD})
	if err != nil {
		return nil, fmt.Errorf("dialling the conntrack event socket: %w", err)
	}
	l := &listener{conn: conn, events: make(chan event, 4096), done: make(chan struct{})}
	if err := l.setReadBuffer(readBuffer, plain); err != nil {
		_ = conn.Close()
		return nil, err
	}
	if !unreliable {
		if err := conn.SetOption(netlink.BroadcastError, true); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("setting NETLINK_BROADCAST_ERROR on the event socket: %w", err)
		}
		l.reliable = true
	}
	for _, g := range []netfilter.NetlinkGroup{netfilter.GroupCTNew, netfilter.GroupCTDestroy} {
		if err := conn.JoinGroup(uint32(g)); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("joining conntrack multicast group %d: %w", g, err)
		}
	}
	l.wg.Add(1)
	go l.read()
	return l, nil
}

// setReadBuffer sets the socket's receive buffer and records what the
// kernel granted (it doubles the request for its bookkeeping).
func (l *listener) setReadBuffer(bytes int, plain bool) error {
	rc, err := l.conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("reaching the event socket: %w", err)
	}
	var sockErr error
	ctrlErr := rc.Control(func(fd uintptr) {
		if !plain {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bytes); err == nil {
				l.forced = true
			}
		}
		if !l.forced {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, bytes); err != nil {
				sockErr = fmt.Errorf("setting the event socket's receive buffer to %d bytes: %w", bytes, err)
				return
			}
		}
		l.rcvbuf, sockErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	})
	if ctrlErr != nil {
		return fmt.Errorf("reaching the event socket: %w", ctrlErr)
	}
	return sockErr
}

// read decodes the socket's messages into l.events until the socket fails
// or is closed; a failure is sent as the last event.
func (l *listener) read() {
	defer l.wg.Done()
	for {
		msgs, err := l.conn.Receive()
		if err != nil && l.reliable && errors.Is(err, unix.ENOBUFS) {
			// The error is the socket's pending one, cleared by this read:
			// the socket reads on. Undelivered DESTROYs come again.
			select {
			case l.events <- event{typ: evOverflow, at: time.Now(), err: err}:
				continue
			case <-l.done:
				return
			}
		}
		if err != nil {
			select {
			case <-l.done: // closed by close
			case l.events <- event{typ: evError, at: time.Now(), err: err}:
			}
			return
		}
		at := time.Now()
		for _, m := range msgs {
			ev := decode(m, at)
			select {
			case l.events <- ev:
			case <-l.done:
				return
			}
		}
	}
}

// decode turns a netlink message into an event.
func decode(m netlink.Message, at time.Time) event {
	var ce conntrack.Event
	if err := ce.Unmarshal(m); err != nil {
		return event{typ: evDecodeError, at: at, err: err}
	}
	if ce.Flow == nil {
		return event{typ: evDecodeError, at: at, err: errors.New("event without a flow")}
	}
	k, rec, ok := convert(ce.Flow)
	if !ok {
		return event{typ: evDecodeError, at: at, err: errors.New("flow without valid tuples")}
	}
	switch ce.Type {
	case conntrack.EventNew:
		return event{typ: evNew, at: at, key: k, rec: rec}
	case conntrack.EventDestroy:
		return event{typ: evDestroy, at: at, key: k, rec: rec}
	default:
		return event{typ: evDecodeError, at: at, err: fmt.Errorf("unexpected event type %v", ce.Type)}
	}
}

// close closes the socket and waits for the reader to end.
func (l *listener) close() {
	l.closeMu.Do(func() {
		close(l.done)
		_ = l.conn.Close()
		l.wg.Wait()
	})
}
