//! The TOML configuration: any file text yields settings or an error that
//! names what is wrong, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = lockstep::config::Settings::from_text(text);
});
