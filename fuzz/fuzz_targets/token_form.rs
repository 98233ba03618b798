//! The form body of RFC 7662 introspection and RFC 7009 revocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = lockstep_proto::oauth::TokenRequest::token_from_form(data) {
        assert!(!token.is_empty());
    }
});
