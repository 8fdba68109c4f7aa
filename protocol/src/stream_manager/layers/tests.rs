use super::*;
use serde_json::json;

fn content(value: serde_json::Value) -> Result<LayerContent, FieldError> {
    let mut content: LayerContent = serde_json::from_value(value).expect("parses");
    content.validate().map(|()| content)
}

#[test]
fn the_defaults_are_the_seed_templates() {
    let layers = default_layers(1.0);
    let json = serde_json::to_value(&layers).unwrap();
    assert_eq!(json[0]["id"], "host");
    assert_eq!(json[0]["type"], "character");
    assert_eq!(
        json[0]["content"]["modelUrl"],
        "assets/characters/auctioneer.png"
    );
    assert_eq!(
        json[0]["content"]["animations"]["talking"],
        "talking-animation"
    );
    assert_eq!(
        json[1]["content"],
        json!({"type": "text", "content": "Current Bid: 1.5 ETH",
               "style": {"font": "Arial", "fontSize": 24.0, "color": "#ffffff"}})
    );
    for mut layer in layers {
        layer.content.validate().expect("the defaults are valid");
        layer.position.validate().unwrap();
    }
}

#[test]
fn text_defaults_fill_in_and_ranges_name_their_field() {
    let LayerContent::Text(text) = content(json!({"type": "text", "content": "hi"})).unwrap()
    else {
        panic!("text");
    };
    assert_eq!(text.style, TextStyle::default());
    let bad = [
        (
            json!({"type": "text", "style": {"fontSize": 0}}),
            "content.style.fontSize",
        ),
        (
            json!({"type": "text", "style": {"color": "red"}}),
            "content.style.color",
        ),
        (
            json!({"type": "text", "style": {"background": "#12345"}}),
            "content.style.background",
        ),
        (
            json!({"type": "text", "style": {"font": "a;b"}}),
            "content.style.font",
        ),
        (
            json!({"type": "text", "content": "x".repeat(2001)}),
            "content.content",
        ),
        (
            json!({"type": "image", "assetId": "a", "opacity": 2}),
            "content.opacity",
        ),
        (
            json!({"type": "character", "modelUrl": "../x.png", "animations": {"a": "b"}}),
            "content.modelUrl",
        ),
        (
            json!({"type": "character", "modelUrl": "javascript:alert(1)", "animations": {"a": "b"}}),
            "content.modelUrl",
        ),
        (
            json!({"type": "character", "modelUrl": "x.png", "animations": {}}),
            "content.animations",
        ),
        (
            json!({"type": "character", "modelUrl": "x.png", "animations": {"a": "b"}, "animation": "c"}),
            "content.animation",
        ),
    ];
    for (value, field) in bad {
        assert_eq!(content(value.clone()).unwrap_err().field, field, "{value}");
    }
}

#[test]
fn a_character_plays_idle_or_its_first_animation() {
    let pick = |animations: serde_json::Value| {
        let c = content(json!({"type": "character", "modelUrl": "https://cdn.example/a.png", "animations": animations}))
            .unwrap();
        let LayerContent::Character(c) = c else {
            panic!()
        };
        c.animation.unwrap()
    };
    assert_eq!(pick(json!({"wave": "w", "idle": "i"})), "idle");
    assert_eq!(pick(json!({"wave": "w", "bow": "b"})), "bow");
}

#[test]
fn a_server_set_url_is_not_taken_from_the_client() {
    let c = content(json!({"type": "image", "assetId": "ast_1", "url": "https://evil"})).unwrap();
    let LayerContent::Image(image) = c else {
        panic!()
    };
    assert_eq!(image.url, None);
}

#[test]
fn ids_names_positions_and_z() {
    assert!(valid_layer_id("lyr_0123abcd"));
    assert!(!valid_layer_id("../etc"));
    assert!(!valid_layer_id(""));
    assert!(!valid_layer_id(&"a".repeat(65)));
    assert!(validate_name("lyrics").is_ok());
    assert!(validate_name("").is_err());
    assert!(validate_name("a\u{0}b").is_err());
    assert_eq!(
        Position {
            x: 101.0,
            ..Position::default()
        }
        .validate()
        .unwrap_err()
        .field,
        "position.x"
    );
    assert_eq!(
        Position {
            height: Some(-1.0),
            ..Position::default()
        }
        .validate()
        .unwrap_err()
        .field,
        "position.height"
    );
    assert!(validate_z(1000).is_ok());
    assert!(validate_z(1001).is_err());
}
