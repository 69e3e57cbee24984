package kafkaclient

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestDialSetsTCPUserTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct {
		set  time.Duration
		want int
	}{{7 * time.Second, 7000}, {0, 0}} {
		c := &Connection{TCP: TCP{KeepAliveIdle: 15 * time.Second, KeepAliveInterval: 15 * time.Second, KeepAliveCount: 9, UserTimeout: tc.set}}
		conn, err := c.Dial(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		raw, err := conn.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got, keepAlive int
		var gerr error
		_ = raw.Control(func(fd uintptr) {
			got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
			if gerr == nil {
				keepAlive, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
			}
		})
		conn.Close()
		if gerr != nil {
			t.Fatal(gerr)
		}
		if got != tc.want || keepAlive != 1 {
			t.Errorf("tcp_user_timeout %v: socket has TCP_USER_TIMEOUT %d ms (want %d), SO_KEEPALIVE %d (want 1)", tc.set, got, tc.want, keepAlive)
		}
	}
}
