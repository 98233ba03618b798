//! `Authorization` header parsing: any header value is a bearer token, a
//! Basic id and secret, or no credential.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else { return };
    let _ = lockstep_http::parse_authorization(header);
});
