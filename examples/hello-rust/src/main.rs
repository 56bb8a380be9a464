//! hello: the smallest useful /init, in Rust (examples/hello-rust.toml).
//!
//! It prints the profile's marker (TINYUKI_MARKER, set by tinyuki at build
//! time), one line, and exits with the status given on the kernel command
//! line as HELLO_EXIT=N (the kernel hands unknown name=value words to init as
//! its environment). The kernel's panic message at init's exit carries the
//! status, and `doit boot` exits with it.

fn main() {
    println!("{}", option_env!("TINYUKI_MARKER").unwrap_or("hello: started"));
    println!("hello from Rust");
    let status: i32 = std::env::var("HELLO_EXIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| (0..=255).contains(v))
        .unwrap_or(0);
    println!("hello: exiting with status {status}");
    std::process::exit(status);
}
