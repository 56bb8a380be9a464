// hello: the smallest useful /init, in Go (examples/hello-go.toml).
//
// It prints the profile's marker (set at link time by tinyuki with
// -X main.tinyukiMarker), one line, and exits with the status given on the
// kernel command line as HELLO_EXIT=N (the kernel hands unknown name=value
// words to init as its environment). The kernel's panic message at init's
// exit carries the status, and `doit boot` exits with it.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
)

var tinyukiMarker = "hello: started"

func main() {
	fmt.Println(tinyukiMarker)
	fmt.Printf("hello from Go (%s, %d CPUs)\n", runtime.Version(), runtime.NumCPU())
	status := 0
	if v, err := strconv.Atoi(os.Getenv("HELLO_EXIT")); err == nil && v >= 0 && v <= 255 {
		status = v
	}
	fmt.Printf("hello: exiting with status %d\n", status)
	os.Exit(status)
}
