//! Argument checks, AWS rejection messages and the CSR of `awslink provision`.

use super::*;

#[test]
fn params_are_key_value_pairs() {
    let p = parse_params(&["SerialNumber=0042".into(), "Site=a=b".into()]).unwrap();
    assert_eq!(p.get("SerialNumber").map(String::as_str), Some("0042"));
    assert_eq!(p.get("Site").map(String::as_str), Some("a=b"));
    assert_eq!(
        parse_params(&["novalue".into()]).unwrap_err().exit_code(),
        2
    );
    assert_eq!(parse_params(&["=x".into()]).unwrap_err().exit_code(), 2);
    let twice = parse_params(&["a=1".into(), "a=2".into()]).unwrap_err();
    assert!(twice.to_string().contains("twice"), "{twice:?}");
}

#[test]
fn template_names_follow_aws() {
    assert!(check_template_name("awslink-demo_2").is_ok());
    for bad in ["", "a b", "a/b", &"x".repeat(37)] {
        assert_eq!(
            check_template_name(bad).unwrap_err().exit_code(),
            2,
            "{bad}"
        );
    }
    assert_eq!(
        provision_topic("t"),
        "$aws/provisioning-templates/t/provision/json"
    );
}

#[test]
fn rejections_name_the_aws_error_and_the_fix() {
    let body = json!({"statusCode": 404, "errorCode": "ResourceNotFoundException",
                      "errorMessage": "The provisioning template nope does not exist"});
    let m = rejection_message("RegisterThing", "nope", &body);
    assert!(
        m.starts_with("provisioning rejected at RegisterThing: ResourceNotFoundException (404): The provisioning template nope does not exist; "),
        "{m}"
    );
    assert!(m.contains("--template"), "{m}");
    let m = rejection_message("CreateCertificateFromCsr", "t", &json!({}));
    assert!(m.contains("(no errorCode) (?)"), "{m}");
    let closed = ReplyError::Closed {
        step: "RegisterThing",
        topic: provision_topic("t"),
    }
    .into_failure("t");
    assert_eq!(closed.exit_code(), 1);
    assert!(closed
        .to_string()
        .contains("iot:Publish on topic/$aws/provisioning-templates/t/provision/json"));
}

#[test]
fn the_csr_carries_the_device_id_and_verifies() {
    let key = new_key(crate::cli::KeyType::EcP256).unwrap();
    let pem = signing_request("sn-1", &key).unwrap();
    let req = openssl::x509::X509Req::from_pem(&pem).unwrap();
    assert!(req.verify(&key).unwrap());
    let cn = req
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .unwrap();
    assert_eq!(cn.data().as_slice(), b"sn-1");
}
