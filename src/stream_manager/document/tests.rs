use super::*;
use serde_json::json;

const LIMITS: DocLimits = DocLimits {
    max_layers: 4,
    max_assets: 2,
};

fn doc() -> StreamDoc {
    StreamDoc::fresh(Some("band".into()), 1000.0)
}

fn control(
    doc: &mut StreamDoc,
    control: Control,
    at: f64,
) -> Result<Vec<StageEvent>, ManagerError> {
    doc.apply(
        Action::Control {
            control,
            quality: None,
        },
        at,
        LIMITS,
    )
}

fn create(
    doc: &mut StreamDoc,
    id: &str,
    body: serde_json::Value,
) -> Result<Vec<StageEvent>, ManagerError> {
    let body: LayerCreate = serde_json::from_value(body).unwrap();
    doc.apply(
        Action::CreateLayer {
            id: id.into(),
            body,
        },
        2000.0,
        LIMITS,
    )
}

fn asset(id: &str, mime: &str) -> AssetInfo {
    AssetInfo {
        id: id.into(),
        name: "a".into(),
        mime: mime.into(),
        size: 1,
        sha256: "00".into(),
        url: asset_url(id),
        created_at: 1.0,
        session: Some("band".into()),
    }
}

#[test]
fn the_state_machine_moves_and_refuses_as_documented() {
    let mut d = doc();
    let err = control(&mut d, Control::Pause, 1100.0).unwrap_err();
    assert_eq!(err.code(), "INVALID_TRANSITION");
    assert_eq!(err.to_string(), "cannot pause a stream that is idle");
    assert_eq!(d.version, 0, "a refused change leaves the document alone");
    control(&mut d, Control::Start, 2000.0).unwrap();
    assert_eq!(
        (d.state, d.started_at, d.version),
        (StreamState::Live, Some(2000.0), 1)
    );
    assert!(control(&mut d, Control::Start, 2100.0).is_err());
    control(&mut d, Control::Pause, 3000.0).unwrap();
    assert_eq!(
        d.status(9000.0, 0, false).live_ms,
        1000,
        "paused time is not live time"
    );
    control(&mut d, Control::Start, 4000.0).unwrap();
    assert_eq!(d.started_at, Some(2000.0), "a resume keeps startedAt");
    assert_eq!(d.status(4500.0, 0, false).live_ms, 1500);
    control(&mut d, Control::Stop, 5000.0).unwrap();
    assert_eq!(d.status(9000.0, 0, false).live_ms, 2000);
    assert!(control(&mut d, Control::Stop, 5100.0).is_err());
    assert!(control(&mut d, Control::Pause, 5100.0).is_err());
    control(&mut d, Control::Start, 6000.0).unwrap();
    assert_eq!(
        d.started_at,
        Some(6000.0),
        "a start after stop is a new show"
    );
    assert_eq!(d.version, 5);
}

#[test]
fn state_events_carry_the_committed_version() {
    let mut d = doc();
    let events = control(&mut d, Control::Start, 2000.0).unwrap();
    let StageEvent::StateUpdate(status) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!((status.version, status.state), (1, StreamState::Live));
}

#[test]
fn reset_restores_the_defaults_but_keeps_assets_and_counts_on() {
    let mut d = doc();
    d.apply(
        Action::AddAsset(asset("ast_1", "image/png")),
        1500.0,
        LIMITS,
    )
    .unwrap();
    create(
        &mut d,
        "lyr_a",
        json!({"content": {"type": "text", "content": "verse"}}),
    )
    .unwrap();
    control(&mut d, Control::Start, 2500.0).unwrap();
    let events = control(&mut d, Control::Reset, 3000.0).unwrap();
    assert_eq!(d.state, StreamState::Idle);
    assert_eq!(d.layers, default_layers(3000.0));
    assert_eq!(d.assets.len(), 1);
    assert_eq!(d.version, 4);
    assert_eq!(d.session.as_deref(), Some("band"));
    let StageEvent::StreamState(snapshot) = &events[0] else {
        panic!()
    };
    assert_eq!(
        (
            snapshot.status.version,
            snapshot.layers.len(),
            snapshot.assets.len()
        ),
        (4, 2, 1)
    );
}

#[test]
fn layers_get_ids_z_order_and_defaults() {
    let mut d = doc();
    create(
        &mut d,
        "lyr_a",
        json!({"content": {"type": "text", "content": "verse"}}),
    )
    .unwrap();
    let layer = d.layer("lyr_a").unwrap();
    assert_eq!(
        (layer.z_index, layer.visible, layer.name.as_str()),
        (2, true, "text")
    );
    create(
        &mut d,
        "lyr_b",
        json!({"zIndex": -5, "name": "floor", "content": {"type": "text"}}),
    )
    .unwrap();
    let order: Vec<_> = d.layers_in_order().into_iter().map(|l| l.id).collect();
    assert_eq!(order, ["lyr_b", "host", "overlay", "lyr_a"]);
    let full = create(&mut d, "lyr_d", json!({"content": {"type": "text"}})).unwrap_err();
    assert_eq!((full.code(), full.status().as_u16()), ("LAYER_LIMIT", 409));
}

#[test]
fn bad_fields_are_named() {
    let mut d = doc();
    let field = |d: &mut StreamDoc, body| match create(d, "lyr_x", body).unwrap_err() {
        ManagerError::InvalidField { field, .. } => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(&mut d, json!({"name": "", "content": {"type": "text"}})),
        "name"
    );
    assert_eq!(
        field(&mut d, json!({"zIndex": 5000, "content": {"type": "text"}})),
        "zIndex"
    );
    assert_eq!(
        field(
            &mut d,
            json!({"position": {"x": -1}, "content": {"type": "text"}})
        ),
        "position.x"
    );
    assert_eq!(
        field(
            &mut d,
            json!({"content": {"type": "image", "assetId": "ast_none"}})
        ),
        "content.assetId"
    );
    d.apply(
        Action::AddAsset(asset("ast_glb", "model/gltf-binary")),
        1.0,
        LIMITS,
    )
    .unwrap();
    assert_eq!(
        field(
            &mut d,
            json!({"content": {"type": "image", "assetId": "ast_glb"}})
        ),
        "content.assetId"
    );
    assert_eq!(d.version, 1, "only the asset was committed");
}

#[test]
fn updates_replace_only_the_fields_given() {
    let mut d = doc();
    let body: LayerUpdate = serde_json::from_value(json!({"zIndex": 7})).unwrap();
    d.apply(
        Action::UpdateLayer {
            id: "overlay".into(),
            body,
        },
        5.0,
        LIMITS,
    )
    .unwrap();
    let overlay = d.layer("overlay").unwrap();
    assert_eq!(overlay.z_index, 7);
    assert_eq!(
        overlay.kind,
        bandsync_protocol::stream_manager::layers::LayerKind::Text
    );
    let body: LayerUpdate = serde_json::from_value(
        json!({"content": {"type": "character", "modelUrl": "m.png", "animations": {"wave": "w"}}}),
    )
    .unwrap();
    d.apply(
        Action::UpdateLayer {
            id: "overlay".into(),
            body,
        },
        6.0,
        LIMITS,
    )
    .unwrap();
    let overlay = d.layer("overlay").unwrap();
    assert_eq!(
        overlay.kind,
        bandsync_protocol::stream_manager::layers::LayerKind::Character
    );
    assert_eq!(overlay.updated_at, 6.0);
    let missing = d.apply(
        Action::UpdateLayer {
            id: "nope".into(),
            body: LayerUpdate::default(),
        },
        7.0,
        LIMITS,
    );
    assert_eq!(missing.unwrap_err().code(), "LAYER_NOT_FOUND");
}

#[test]
fn visibility_sets_or_toggles() {
    let mut d = doc();
    let toggle = |d: &mut StreamDoc, visible| {
        d.apply(
            Action::SetVisibility {
                id: "host".into(),
                visible,
            },
            5.0,
            LIMITS,
        )
        .unwrap();
        d.layer("host").unwrap().visible
    };
    assert!(!toggle(&mut d, None));
    assert!(toggle(&mut d, None));
    assert!(toggle(&mut d, Some(true)));
    assert!(!toggle(&mut d, Some(false)));
}

#[test]
fn an_asset_in_use_cannot_be_removed_and_limits_hold() {
    let mut d = doc();
    d.apply(Action::AddAsset(asset("ast_1", "image/png")), 1.0, LIMITS)
        .unwrap();
    create(
        &mut d,
        "lyr_img",
        json!({"content": {"type": "image", "assetId": "ast_1"}}),
    )
    .unwrap();
    let LayerContent::Image(image) = &d.layer("lyr_img").unwrap().content else {
        panic!()
    };
    assert_eq!(image.url.as_deref(), Some("/stream/assets/ast_1/content"));
    let err = d
        .apply(Action::RemoveAsset("ast_1".into()), 2.0, LIMITS)
        .unwrap_err();
    assert_eq!(err.body()["layers"], json!(["lyr_img"]));
    assert_eq!(err.status().as_u16(), 409);
    d.apply(Action::DeleteLayer("lyr_img".into()), 3.0, LIMITS)
        .unwrap();
    d.apply(Action::RemoveAsset("ast_1".into()), 4.0, LIMITS)
        .unwrap();
    assert!(d.assets.is_empty());
    d.apply(Action::AddAsset(asset("ast_2", "image/png")), 5.0, LIMITS)
        .unwrap();
    d.apply(Action::AddAsset(asset("ast_3", "image/png")), 5.0, LIMITS)
        .unwrap();
    let full = d
        .apply(Action::AddAsset(asset("ast_4", "image/png")), 5.0, LIMITS)
        .unwrap_err();
    assert_eq!(full.code(), "ASSET_LIMIT");
}

#[test]
fn a_document_round_trips_through_its_stored_form() {
    let mut d = doc();
    control(&mut d, Control::Start, 2000.0).unwrap();
    create(
        &mut d,
        "lyr_a",
        json!({"content": {"type": "text", "content": "ü"}}),
    )
    .unwrap();
    let stored = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<StreamDoc>(&stored).unwrap(), d);
}
