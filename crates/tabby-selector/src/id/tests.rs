use super::*;

fn b64(bytes: &[u8]) -> String {
    let mut s = String::new();
    base64url_nopad(bytes, &mut s);
    s
}

#[test]
fn base64url_matches_rfc4648_vectors_without_padding() {
    assert_eq!(b64(b""), "");
    assert_eq!(b64(b"f"), "Zg");
    assert_eq!(b64(b"fo"), "Zm8");
    assert_eq!(b64(b"foo"), "Zm9v");
    assert_eq!(b64(b"foob"), "Zm9vYg");
    assert_eq!(b64(b"fooba"), "Zm9vYmE");
    assert_eq!(b64(b"foobar"), "Zm9vYmFy");
}

#[test]
fn base64url_uses_the_url_safe_alphabet() {
    assert_eq!(b64(&[0xfb, 0xff, 0xbf]), "-_-_");
}

#[test]
fn unique_id_matches_calico_vectors() {
    assert_eq!(
        make_unique_id("s", "all()"),
        "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"
    );
    assert_eq!(
        make_unique_id("s", "!(has(b) || !has(a))"),
        "s:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q"
    );
    assert_eq!(
        make_unique_id("s", r#"!(a == "b" && !c != "d")"#),
        "s:lh3haoY1ikTRkd4UZu0nWSaIBknYLPJLX16d-w"
    );
}
