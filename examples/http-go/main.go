// http: an HTTP server as /init, in Go's net/http (examples/http-go.toml).
//
// The kernel has configured eth0 from ip= on its command line before /init
// starts (the net fragment's IP_PNP), so the program only listens. `doit boot`
// forwards 127.0.0.1:8080 on the host to the guest's port 80 and keeps the VM
// up while the program serves:
//
//	GET /      answers one line: who is serving, and the client's address
//	GET /exit  answers "bye", then the program exits with status 0 (or the
//	           status given as /exit?status=N), which `doit boot` exits with
//
// HTTP_PORT=N on the kernel command line changes the guest's port.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"time"
)

var tinyukiMarker = "http: started"

func main() {
	fmt.Println(tinyukiMarker)
	port := "80"
	if p, err := strconv.Atoi(os.Getenv("HTTP_PORT")); err == nil && p > 0 && p < 65536 {
		port = strconv.Itoa(p)
	}
	exit := make(chan int, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "hello from Go's net/http (%s) in tinyuki, to %s\n", runtime.Version(), r.RemoteAddr)
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		status := 0
		if s := r.URL.Query().Get("status"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 0 || v > 255 {
				http.Error(w, "status must be 0 to 255\n", http.StatusBadRequest)
				return
			}
			status = v
		}
		fmt.Fprintf(w, "bye (exit status %d)\n", status)
		select { // the first /exit decides; a second one does not wait
		case exit <- status:
		default:
		}
	})
	listener, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Printf("http: cannot listen on port %s: %v\n", port, err)
		os.Exit(1)
	}
	fmt.Printf("http: listening on %s\n", listener.Addr())
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := server.Serve(listener); err != http.ErrServerClosed {
			fmt.Printf("http: %v\n", err)
			os.Exit(1)
		}
	}()
	status := <-exit
	// Shutdown waits until the answer to /exit has gone out: init's exit ends the VM.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = server.Shutdown(ctx)
	fmt.Printf("http: exiting with status %d\n", status)
	os.Exit(status)
}
