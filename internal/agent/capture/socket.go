package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

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

// Reading: one recvmmsg takes up to readBatch datagrams (each one event
// message of a few hundred bytes; the kernel sends at most a page, so a
// buffer of msgBufSize holds any), decoded in place and handed to the
// capture loop as one batch.
const (
	readBatch  = 64
	msgBufSize = 8192
	// batchesQueued bounds the batches between the reader and the loop.
	batchesQueued = 64
	// coalesce is how long the reader waits after a read that did not
	// fill its batch: at 40,000 events/s, about 40 events a read instead
	// of one or two, for a delay of at most this to each event's record.
	coalesce = 5 * time.Millisecond
)

// listener is an event socket subscribed to NEW and DESTROY, read by its own
// goroutine into batches of events. The socket is a plain blocking one, not
// in Go's network poller: while the reader waits for events to gather, the
// datagrams arriving do not wake the poller one by one (an edge-triggered
// epoll wakes at each, 40,000 times a second under load).
type listener struct {
	fd     int
	events chan []event
	free   chan []event
	done   chan struct{}
	wg     sync.WaitGroup
	rcvbuf int
	forced bool
	// reliable is set when the socket has NETLINK_BROADCAST_ERROR.
	reliable bool
	closeMu  sync.Once
}

// pollTimeout bounds a blocking read, so that the reader sees a close.
const pollTimeout = 100 * time.Millisecond

// listen opens an event socket in the namespace mounted at netnsPath ("":
// the current one), sets its receive buffer to readBuffer bytes (with
// SO_RCVBUFFORCE, falling back to SO_RCVBUF, unless plain), makes its
// DESTROY events reliable unless unreliable, joins the conntrack NEW and
// DESTROY groups and starts its reader.
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
func listen(netnsPath string, readBuffer int, plain, unreliable bool) (*listener, error) {
	fd := -1
	err := inNetNS(netnsPath, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening the conntrack event socket: %w", err)
	}
	l := &listener{fd: fd, events: make(chan []event, batchesQueued), free: make(chan []event, batchesQueued+1), done: make(chan struct{})}
	if err := l.setup(readBuffer, plain, unreliable); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	l.wg.Add(1)
	go l.read()
	return l, nil
}

// setup binds the socket, sets its buffer, timeout and reliability, and
// joins the groups.
func (l *listener) setup(readBuffer int, plain, unreliable bool) error {
	if err := unix.Bind(l.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("binding the conntrack event socket: %w", err)
	}
	if !plain {
		if err := unix.SetsockoptInt(l.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, readBuffer); err == nil {
			l.forced = true
		}
	}
	if !l.forced {
		if err := unix.SetsockoptInt(l.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, readBuffer); err != nil {
			return fmt.Errorf("setting the event socket's receive buffer to %d bytes: %w", readBuffer, err)
		}
	}
	var err error
	if l.rcvbuf, err = unix.GetsockoptInt(l.fd, unix.SOL_SOCKET, unix.SO_RCVBUF); err != nil {
		return fmt.Errorf("reading the event socket's receive buffer: %w", err)
	}
	tv := unix.NsecToTimeval(pollTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(l.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("setting the event socket's read timeout: %w", err)
	}
	if !unreliable {
		if err := unix.SetsockoptInt(l.fd, unix.SOL_NETLINK, unix.NETLINK_BROADCAST_ERROR, 1); err != nil {
			return fmt.Errorf("setting NETLINK_BROADCAST_ERROR on the event socket: %w", err)
		}
		l.reliable = true
	}
	for _, g := range []netfilter.NetlinkGroup{netfilter.GroupCTNew, netfilter.GroupCTDestroy} {
		if err := unix.SetsockoptInt(l.fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(g)); err != nil {
			return fmt.Errorf("joining conntrack multicast group %d: %w", g, err)
		}
	}
	return nil
}

// read decodes the socket's messages into batches on l.events until the
// socket fails or the listener is closed; a failure is sent as the last
// event.
func (l *listener) read() {
	defer l.wg.Done()
	r := newBatchReader()
	for {
		n, errno := r.recv(l.fd)
		select {
		case <-l.done:
			return
		default:
		}
		switch {
		case errno == unix.EAGAIN || errno == unix.EINTR:
			continue // the read timed out: nothing came
		case errno != nil:
			ev := event{typ: evError, at: time.Now(), err: os.NewSyscallError("recvmmsg", errno)}
			if l.reliable && errno == unix.ENOBUFS {
				// The error is the socket's pending one, cleared by this read:
				// the socket reads on. Undelivered DESTROYs come again.
				ev.typ = evOverflow
			}
			if !l.send([]event{ev}) || ev.typ == evError {
				return
			}
			continue
		}
		at := time.Now()
		batch := l.batch()
		for i := range n {
			batch = r.decode(i, at, batch)
		}
		if !l.send(batch) {
			return
		}
		if n < readBatch {
			// Few events were waiting: let more gather in the socket's
			// buffer rather than wake for each (a full read goes on at
			// once, so a burst is read at full speed).
			select {
			case <-time.After(coalesce):
			case <-l.done:
				return
			}
		}
	}
}

// send hands a batch to the loop; false once the listener is closed.
func (l *listener) send(batch []event) bool {
	select {
	case l.events <- batch:
		return true
	case <-l.done:
		return false
	}
}

// batch returns an empty batch, reusing one the loop gave back.
func (l *listener) batch() []event {
	select {
	case b := <-l.free:
		return b[:0]
	default:
		return make([]event, 0, readBatch)
	}
}

// release gives a handled batch back for reuse.
func (l *listener) release(b []event) {
	select {
	case l.free <- b[:0]:
	default:
	}
}

// batchReader reads datagrams with recvmmsg into fixed buffers.
type batchReader struct {
	bufs []byte
	iovs []unix.Iovec
	hdrs []unix.Mmsghdr
}

func newBatchReader() *batchReader {
	r := &batchReader{bufs: make([]byte, readBatch*msgBufSize), iovs: make([]unix.Iovec, readBatch), hdrs: make([]unix.Mmsghdr, readBatch)}
	for i := range r.hdrs {
		r.iovs[i].Base = &r.bufs[i*msgBufSize]
		r.iovs[i].SetLen(msgBufSize)
		r.hdrs[i].Hdr.Iov = &r.iovs[i]
		r.hdrs[i].Hdr.SetIovlen(1)
	}
	return r
}

// recv waits for at least one datagram (up to pollTimeout) and reads up to
// readBatch: their count, or the socket's error (EAGAIN when none came).
func (r *batchReader) recv(fd int) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&r.hdrs[0])), readBatch, unix.MSG_WAITFORONE, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// decode appends the events of datagram i (one or more netlink messages).
func (r *batchReader) decode(i int, at time.Time, batch []event) []event {
	h := &r.hdrs[i]
	b := r.bufs[i*msgBufSize : i*msgBufSize+int(h.Len)]
	if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
		return append(batch, event{typ: evDecodeError, at: at, err: errors.New("conntrack message larger than the read buffer")})
	}
	for len(b) >= nlmsgHdrLen {
		n := int(binary.NativeEndian.Uint32(b))
		if n < nlmsgHdrLen || n > len(b) {
			return append(batch, event{typ: evDecodeError, at: at, err: errTruncated})
		}
		batch = append(batch, decodeEvent(b[:n], at))
		b = b[min(len(b), (n+3)&^3):]
	}
	return batch
}

// close stops the reader (within pollTimeout) and closes the socket.
func (l *listener) close() {
	l.closeMu.Do(func() {
		close(l.done)
		l.wg.Wait()
		_ = unix.Close(l.fd)
	})
}
