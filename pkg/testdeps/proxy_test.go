package testdeps

import (
	"bufio"
	"errors"
	"net"
	"syscall"
	"testing"
)

// TestProxy: the port refuses connections until Up, then forwards both
// ways; Down cuts the open connections and refuses again.
func TestProxy(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil {
					_, _ = c.Write([]byte("echo " + line))
				}
				_, _ = c.Read(make([]byte, 1)) // hold the connection until the peer closes it
			}()
		}
	}()

	p := NewProxy(t, echo.Addr().String())
	if _, err := net.Dial("tcp", p.Addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial before Up: %v, want connection refused", err)
	}
	p.Up(t)
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatalf("dial once up: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	if got, err := r.ReadString('\n'); err != nil || got != "echo hello\n" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}
	p.Down()
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("a forwarded connection survived Down")
	}
	if _, err := net.Dial("tcp", p.Addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial after Down: %v, want connection refused", err)
	}
	if got := p.URL(t, "postgres://u:p@db.example:5432/x?sslmode=disable"); got != "postgres://u:p@"+p.Addr+"/x?sslmode=disable" {
		t.Fatalf("URL: %s", got)
	}
}
