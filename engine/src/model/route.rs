//! The kinds of request the engine serves, named once for routing and for metric labels.

/// What a request asks for, by route: the tracking routes and the engine's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Event,
    Pixel,
    HealthCheck,
    HealthReady,
    Metrics,
    Other,
}

impl Route {
    pub const ALL: [Route; 6] = [
        Route::Event,
        Route::Pixel,
        Route::HealthCheck,
        Route::HealthReady,
        Route::Metrics,
        Route::Other,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Event => "event",
            Route::Pixel => "pixel",
            Route::HealthCheck => "health_check",
            Route::HealthReady => "health_ready",
            Route::Metrics => "metrics",
            Route::Other => "other",
        }
    }
}
